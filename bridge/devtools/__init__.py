"""Tools for development and tests: the Intilery sandbox, a real Kafka broker on
loopback, librdkafka's mock cluster, a small schema registry, and the demo."""
