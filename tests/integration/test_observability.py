"""/metrics exposes every documented metric with plausible values after a run;
/healthz answers; /readyz flips to 503 while Intilery refuses the credentials, and
is 200 for a member of the group that has no partitions (a standby)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from bridge import __version__
from bridge.devtools.sandbox import Sandbox
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    log_events,
    produce_events,
    sms_event,
    start_bridge,
    wait_for,
    with_ownership,
    write_config,
)
from tests.unit.test_monitoring import documented_metrics, monitored_metrics

# Documented metrics a running bridge does not show in this test: only with Redis, labelled
# by a partition that lost records to retention, or only with shadow rules (test_shadow.py).
CONDITIONAL = {
    "intilery_bridge_rate_limit_redis_up",
    "intilery_bridge_state_up",
    "intilery_bridge_records_lost_to_retention_total",
    "intilery_bridge_shadow_commands_total",
}
PROCESS = ["process_resident_memory_bytes", "process_cpu_seconds_total"]  # the table's `process_*`


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        found = re.fullmatch(re.escape(name) + r"(?:\{(.*)\})? (\S+)", line)
        if found and labels.items() <= dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or "")).items():
            return float(found.group(2))
    raise AssertionError(f"{name} {labels} not in /metrics")


def observability_client(log_path: Path) -> httpx.Client:
    """A client of the endpoints of the bridge logging to ``log_path``, once it started."""
    wait_for(lambda: any(e["event"] == "bridge_started" for e in log_events(log_path)), 20, "start")
    port = next(e for e in log_events(log_path) if e["event"] == "bridge_started")["observability_port"]
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)


def test_metrics_health_and_readiness(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 4) for seq in range(30)))
    producer = CheckedProducer(cluster.bootstrap_servers)
    producer.produce(cluster.topic, key="C-x", value=b"not json")
    producer.flush()
    config = base_config(cluster, sandbox.url, "observed")
    # 30 requests through a bucket of 5 refilled at 20/s: at least 1.25 s of waiting, however fast the machine
    config["intilery"]["rate_limit"] = {"per_second": 20, "burst": 5}
    config["delivery"]["retry"]["auth_backoff_ms"] = 300
    log_path = tmp_path / "bridge.log"
    process = start_bridge(write_config(tmp_path, config), log_path)
    try:
        http = observability_client(log_path)
        wait_for(lambda: len(accepted(sandbox)) == 30, 30, "deliveries")
        wait_for(lambda: http.get("/readyz").status_code == 200, 20, "ready")
        assert http.get("/healthz").json() == {"status": "ok"}
        wait_for(
            lambda: "intilery_bridge_consumer_lag_records{" in http.get("/metrics").text, 15, "lag gauges"
        )
        text = http.get("/metrics").text
        for name in sorted(documented_metrics() - CONDITIONAL) + PROCESS:
            assert name in text, name
        for name in monitored_metrics():  # what the dashboard and the alert rules query
            assert name in text, name
        assert sample(text, "intilery_bridge_build_info", version=__version__) == 1
        started = next(e for e in log_events(log_path) if e["event"] == "bridge_started")
        assert started["version"] == __version__
        assert sample(text, "intilery_bridge_records_consumed_total", topic=cluster.topic) == 31
        assert (
            sample(
                text,
                "intilery_bridge_commands_total",
                rule="abandoned-sms",
                command="send_sms",
                outcome="delivered",
            )
            == 30
        )
        assert sample(text, "intilery_bridge_dead_letters_total", error_class="decode") == 1
        assert sample(text, "intilery_bridge_http_request_duration_seconds_count", status="200") == 30
        assert sample(text, "intilery_bridge_event_to_ack_seconds_count") == 30
        assert sample(text, "intilery_bridge_limiter_wait_seconds_total") > 0
        assert sample(text, "intilery_bridge_consumer_lag_records", topic=cluster.topic, partition="0") == 0

        sandbox.state.set_faults({"status": 403})
        producer.produce(cluster.topic, key="C-1", value=json.dumps({"type": "booking_viewed"}).encode())
        producer.produce(
            cluster.topic,
            key="C-1",
            value=json.dumps(
                {
                    "type": "booking_abandoned",
                    "channel": "sms",
                    "seq": 99,
                    "customer": {"id": "C-1"},
                    "booking": {"id": "B", "value": 1},
                }
            ).encode(),
        )
        producer.flush()
        wait_for(lambda: http.get("/readyz").status_code == 503, 20, "not ready during the 403 episode")
        assert "Intilery refuses the credentials (401/403)" in http.get("/readyz").json()["reasons"]
        assert http.get("/healthz").status_code == 200
        # The Kubernetes probe's scope: a member still, so an outage leaves rollouts and drains free.
        assert http.get("/readyz", params={"scope": "group"}).json() == {"status": "ok"}
        assert http.get("/readyz", params={"scope": "everything"}).status_code == 400
        sandbox.state.set_faults({"status": None, "count": 0})
        wait_for(lambda: http.get("/readyz").status_code == 200, 20, "ready again")
        assert 99 in [r["body"]["seq"] for r in accepted(sandbox)]

        # A redirect (intilery.url out of date) holds everything as a 403 does: never a dead letter.
        sandbox.state.set_faults({"status": 301})
        producer.produce(cluster.topic, key="C-9", value=json.dumps(sms_event(100, 9)).encode())
        producer.flush()
        wait_for(lambda: http.get("/readyz").status_code == 503, 20, "not ready while redirected")
        reasons = http.get("/readyz").json()["reasons"]
        assert any(r.startswith("Intilery redirects (301) to https://moved.invalid/track/") for r in reasons)
        sandbox.state.set_faults({"status": None, "count": 0})
        wait_for(
            lambda: 100 in [r["body"]["seq"] for r in accepted(sandbox)], 20, "delivered after the redirect"
        )
        assert (
            sample(http.get("/metrics").text, "intilery_bridge_dead_letters_total", error_class="decode") == 1
        )
        assert [e["status"] for e in log_events(log_path) if e["event"] == "intilery_redirected"][:1] == [301]
        http.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def owned_now(log_path: Path) -> set[str]:
    """The partitions a bridge holds, from its assignment log lines."""
    return next(reversed([owned for _, owned in with_ownership(log_events(log_path))]), set())


def test_a_member_without_partitions_is_a_ready_standby(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """More replicas than partitions: the one the group gives nothing is ready too, so a
    rolling update's readiness gate completes."""
    cluster.create_topic(cluster.topic, 1)
    path = write_config(tmp_path, base_config(cluster, sandbox.url, "standby"))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start_bridge(path, log) for log in logs]
    try:
        clients = [observability_client(log) for log in logs]
        for client in clients:
            wait_for(lambda c=client: c.get("/readyz").status_code == 200, 30, "both ready")
        assert sorted(len(owned_now(log)) for log in logs) == [0, 1], "one owner, one standby"
        for client in clients:
            client.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            assert process.wait(timeout=30) == 0
