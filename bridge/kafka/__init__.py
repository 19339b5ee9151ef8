"""Kafka: the subscribed source (poll, pause, rebalance), the offsets safe to commit
and the map of finished offsets carried in each commit, the dead-letter producer,
and the window a replay or redrive reads."""
