"""The running bridge: the pipeline that wires the stages, per-key lanes, and the
health, readiness and metrics endpoints."""
