"""What operators run besides the bridge: the configuration loader, replay and
redrive, the rules' golden tests, and the configuration's JSON Schema."""
