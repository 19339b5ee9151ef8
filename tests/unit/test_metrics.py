"""bridge.metrics: labelled children looked up once, counted as prometheus_client counts them."""

from __future__ import annotations

from prometheus_client import generate_latest

from bridge.metrics import Metrics
from tests.unit.test_monitoring import documented_metrics


def test_children_are_looked_up_once_and_counted_per_label_set() -> None:
    metrics = Metrics()
    delivered = metrics.commands("abandoned-sms", "send_sms", "delivered")
    assert metrics.commands("abandoned-sms", "send_sms", "delivered") is delivered
    for _ in range(3):
        metrics.commands("abandoned-sms", "send_sms", "delivered").inc()
    metrics.commands("abandoned-sms", "send_sms", "retried").inc()
    metrics.records("bookings").inc(2)
    exposed = generate_latest(metrics.registry).decode()
    sms = 'intilery_bridge_commands_total{command="send_sms",outcome="%s",rule="abandoned-sms"}'
    assert f"{sms % 'delivered'} 3.0" in exposed
    assert f"{sms % 'retried'} 1.0" in exposed
    assert 'intilery_bridge_records_consumed_total{topic="bookings"} 2.0' in exposed


def test_a_revoked_partition_s_gauges_go() -> None:
    """A stale oldest-unfinished age would keep IntileryBridgePartitionStuck firing."""
    metrics = Metrics()
    metrics.oldest_unfinished.labels("t", "0").set(400)
    metrics.lag_records.labels("t", "0").set(5)
    metrics.oldest_unfinished.labels("t", "1").set(1)
    metrics.forget_partition("t", 0)
    metrics.forget_partition("t", 9)  # never set: nothing to do
    text = generate_latest(metrics.registry).decode()
    assert 'partition="0"' not in text and 'intilery_bridge_oldest_unfinished_seconds{partition="1"' in text


def test_the_redis_gauge_exists_only_where_redis_is_configured() -> None:
    """Without Redis it read 0: Redis down, to anyone looking."""
    metrics = Metrics()
    assert "intilery_bridge_rate_limit_redis_up" not in generate_latest(metrics.registry).decode()
    metrics.redis_up.set(1)
    assert "intilery_bridge_rate_limit_redis_up 1.0" in generate_latest(metrics.registry).decode()


def test_every_registered_metric_is_documented_and_every_documented_one_registered() -> None:
    """Read from the registry itself, not typed in: a list typed in missed 3 of 16."""
    metrics = Metrics()
    assert metrics.redis_up is not None  # registered when first used: only with Redis configured
    assert metrics.state_up is not None  # likewise, with delivery.state.redis
    suffix = {"counter": "_total", "info": "_info"}
    registered = {
        family.name + suffix.get(family.type, "")
        for family in metrics.registry.collect()
        if family.name.startswith("intilery_bridge_")
    }
    assert registered == documented_metrics()


def test_outcomes_label_as_the_docs_say() -> None:
    """A mapping dead letter was counted as command="-", the label the docs reserve for
    records no rule matched; a field a template missed is counted per rule and field."""
    from bridge.errors import MappingError, MissingFields
    from bridge.model import Record
    from bridge.runtime.outcomes import Outcomes

    metrics = Metrics()
    outcomes = Outcomes(metrics)
    record = Record("bookings", 0, 1, None, b"{}", [], None)
    outcomes.dead_lettered(record, MappingError("userId: required", rule="sms"), None, "v1")
    outcomes.skipped(record)
    for _ in range(2):
        outcomes.fields_missing("sms", ("travller.firstName",), "empty")
    outcomes.dead_lettered(record, MissingFields(("a",), rule="sms"), None, "v1")
    exposed = generate_latest(metrics.registry).decode()
    assert 'intilery_bridge_commands_total{command="none",outcome="dead_lettered",rule="sms"} 2.0' in exposed
    assert 'intilery_bridge_commands_total{command="-",outcome="skipped",rule="-"} 1.0' in exposed
    assert 'command="-",outcome="dead_lettered"' not in exposed
    missing = 'intilery_bridge_template_missing_total{field="travller.firstName",rule="sms"} 2.0'
    assert missing in exposed
