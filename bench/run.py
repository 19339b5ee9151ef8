"""`make bench`: throughput, flow control and memory, measured in one run.

Everything runs on this machine: librdkafka's mock cluster, a lean aiohttp
sink (bench/sink.py, the same for every row) and the bridge as a subprocess.
Prints a table and writes bench/results.json. Ratios compare figures measured
in the same run; no figure is asserted.

    .venv/bin/python bench/run.py [--records N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.config import IntileryConfig  # noqa: E402
from bridge.decode.decoder import decode_json  # noqa: E402
from bridge.devtools.mockcluster import MockCluster  # noqa: E402
from bridge.intilery.client import IntileryClient  # noqa: E402
from bridge.model import Command  # noqa: E402

TOKEN = "bench-token"
PARTITIONS = 6
MAX_IN_FLIGHT = 32
BATCH = {"batch": {"max_calls": 100, "linger_ms": 20}}  # delivery: the batch-mode rows'
RULE = {
    "name": "abandoned-sms",
    "when": "type == 'booking_abandoned'",
    "emit": {
        "event": "send_sms",
        "userId": "{{ customer.id }}",
        "assetId": "A-SMS",
        "timestamp": "{{ occurredAt }}",
        "bookingId": "{{ booking.id }}",
        "total": "{{ booking.value }}",
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/sink.py"), "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/_stats", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("sink did not start")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_stats", timeout=30).json())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def produce(cluster: MockCluster, topic: str, count: int) -> None:
    cluster.create_topic(topic, PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    for seq in range(count):
        event = {
            "type": "booking_abandoned",
            "channel": "sms",
            "seq": seq,
            "occurredAt": "2026-11-01T10:00:00Z",
            "customer": {"id": f"C-{seq % 1000}"},
            "booking": {"id": f"B-{seq}", "value": 120.5},
        }
        producer.produce(topic, key=f"C-{seq % 1000}", value=json.dumps(event).encode())
        if seq % 10000 == 0:
            producer.poll(0)
    producer.flush(120)


def consume_ceiling(cluster: MockCluster, topic: str, count: int) -> float:
    """Row 1: read and decode, no HTTP."""
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"ceiling-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    done, started = 0, None
    while done < count:
        for message in consumer.consume(500, 1.0):
            if message.error() is None:
                started = started or time.perf_counter()
                decode_json(message.value())
                done += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return count / elapsed


def post_ceiling(sink: Sink, count: int) -> float:
    """Row 2: the same client and concurrency, no Kafka."""
    config = IntileryConfig(url=sink.url, client_id="acme", account_id="acme", auth_token=TOKEN)
    body = {
        "event": "send_sms",
        "userId": "C-1",
        "assetId": "A-SMS",
        "timestamp": "2026-11-01T10:00:00.000Z",
        "bookingId": "B-1",
        "total": 120.5,
    }
    command = Command(rule="r", action="track", body=body, payload=json.dumps(body).encode())

    async def run() -> float:
        client = IntileryClient(config, MAX_IN_FLIGHT)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def one() -> None:
            async with slots:
                await client.post(command)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - started
        await client.close()
        return count / elapsed

    return asyncio.run(run())


def bridge_config(cluster: MockCluster, sink: Sink, topic: str, group: str, **extra: Any) -> dict[str, Any]:
    # delivery.commit_interval_ms is left at its default: its cost is part of the figures
    delivery = {"max_in_flight": MAX_IN_FLIGHT, "dead_letter_topic": "bench.dlq"}
    delivery.update(extra.pop("delivery", {}))
    return {
        "kafka": {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        },
        "source": {"topics": [topic]},
        "intilery": {
            "url": sink.url,
            "client_id": "acme",
            "account_id": "acme",
            "auth_token": TOKEN,
            "rate_limit": extra.pop("rate_limit", {"per_second": 0}),
        },
        "delivery": delivery,
        "log": {"level": "warning"},
        "observability": {"host": "127.0.0.1", "port": 0},
        "rules": [RULE],
    }


def run_bridge(config: dict[str, Any], workdir: Path, wait: bool = True, checkout: Path = ROOT) -> Any:
    """The bridge of ``checkout`` (this one by default) on ``config``, to the end of its topic."""
    path = workdir / f"{config['kafka']['group.id']}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(path), "--until-caught-up"],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not wait:
        return process
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage


OFFSET_COMMIT = 8  # Kafka API key


def run_bridge_counting(
    cluster: MockCluster, config: dict[str, Any], workdir: Path, checkout: Path = ROOT
) -> tuple[Any, dict[str, float]]:
    """Run the bridge to the end of its topic; also the broker requests it made per second
    (all of them, and offset commits), from the mock cluster's request log."""
    cluster.requests()  # start counting afresh
    started = time.monotonic()
    usage = run_bridge(config, workdir, checkout=checkout)
    seconds, requests = time.monotonic() - started, cluster.requests()
    rates = {
        "broker_requests_per_s": sum(requests.values()) / seconds,
        "commits_per_s": requests[OFFSET_COMMIT] / seconds,
    }
    return usage, rates


def delivery_rate(stats: dict[str, Any], skip_first: int = 0) -> float:
    """Calls/s between the first and the last arrival (start-up and group join excluded)."""
    arrivals = sorted(stats["arrivals"])[skip_first:]
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


Configure = Callable[[Sink, str], dict[str, Any]]  # a row's configuration, given its sink and group


def alternated_rounds(
    rows: dict[str, Configure], workdir: Path, records: int, rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """Each row's runs over the same topic of ``records``, the rows alternated round after
    round (the machine is shared and noisy): records per second and CPU us per record."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for round_ in range(rounds):
        for name, configure in rows.items():
            sink = Sink()
            usage = run_bridge(configure(sink, f"{name.replace(' + ', '-')}-{round_}"), workdir)
            assert len(sink.stats()["arrivals"]) >= records, f"{name}: records missing"
            cpu_us = (usage.ru_utime + usage.ru_stime) / records * 1e6
            runs[name].append((delivery_rate(sink.stats()), cpu_us))
            sink.close()
    return runs


def against_plain(runs: dict[str, list[tuple[float, float]]], width: int) -> list[str]:
    """A line per row: its median throughput and CPU per record, each against the row ``plain``."""
    rate = {name: statistics.median(r for r, _ in rows) for name, rows in runs.items()}
    cpu = {name: statistics.median(c for _, c in rows) for name, rows in runs.items()}
    return [
        f"{name:{width}} {rate[name]:8,.0f} rec/s ({rate[name] / rate['plain']:.2f} of plain)   "
        f"CPU {cpu[name]:6.1f} us/record ({cpu[name] / cpu['plain']:.2f} of plain)"
        for name in runs
    ]


def naive_loop(cluster: MockCluster, sink: Sink, topic: str, count: int) -> float:
    """Row 5: poll one record, post it, commit it, one at a time."""
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"naive-{topic}-{sink.port}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    url = f"{sink.url}/track/acme/acme/ACME/v1/track"
    done, started = 0, None
    with httpx.Client(headers={"auth-token": TOKEN, "content-type": "application/json"}) as http:
        while done < count:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            started = started or time.perf_counter()
            event = decode_json(message.value())
            body = {"event": "send_sms", "userId": event["customer"]["id"], "assetId": "A-SMS"}
            http.post(url, json=body).raise_for_status()
            consumer.commit(message=message, asynchronous=False)
            done += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return count / elapsed


def peak_rss_with_backlog(cluster: MockCluster, workdir: Path, backlog: int, seconds: float) -> float:
    """Row 8: a backlog while Intilery is down; the bridge's peak RSS in MB."""
    produce(cluster, "backlog", backlog)
    sink = Sink("--down")
    try:
        process = run_bridge(bridge_config(cluster, sink, "backlog", "backlog"), workdir, wait=False)
        time.sleep(seconds)
        with open(f"/proc/{process.pid}/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        sink.close()
    return peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    n = 3000 if args.quick else args.records
    backlog = 50_000 if args.quick else args.backlog
    rows: dict[str, Any] = {}
    with MockCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cluster.create_topic("bench.dlq", 1)
        produce(cluster, "bench", n)
        rows["1_consume_decode_ceiling"] = {"records_per_s": consume_ceiling(cluster, "bench", n)}

        sink = Sink()
        rows["2_post_ceiling"] = {"commands_per_s": post_ceiling(sink, n)}
        sink.close()

        sink = Sink()
        usage, kafka = run_bridge_counting(cluster, bridge_config(cluster, sink, "bench", "single"), workdir)
        single = delivery_rate(sink.stats())
        ceiling = min(
            rows["1_consume_decode_ceiling"]["records_per_s"], rows["2_post_ceiling"]["commands_per_s"]
        )
        rows["3_bridge_single"] = {
            "records_per_s": single,
            "ratio_to_ceiling": single / ceiling,
            "cpu_us_per_record": (usage.ru_utime + usage.ru_stime) / n * 1e6,
            **kafka,
        }
        sink.close()

        sink = Sink()
        batch = {"delivery": BATCH}
        usage, kafka = run_bridge_counting(
            cluster, bridge_config(cluster, sink, "bench", "batch", **batch), workdir
        )
        batched = delivery_rate(sink.stats())
        rows["4_bridge_batch"] = {
            "records_per_s": batched,
            "ratio_to_consume_ceiling": batched / rows["1_consume_decode_ceiling"]["records_per_s"],
            "cpu_us_per_record": (usage.ru_utime + usage.ru_stime) / n * 1e6,
            "requests": sink.stats()["requests"],
            **kafka,
        }
        sink.close()

        sink = Sink()
        naive_n = min(n, 2000)
        naive = naive_loop(cluster, sink, "bench", naive_n)
        rows["5_naive_loop"] = {"records_per_s": naive, "records": naive_n, "bridge_ratio": single / naive}
        sink.close()

        sink = Sink("--latency-ms", "20")
        run_bridge(bridge_config(cluster, sink, "bench", "latency"), workdir)
        slow = delivery_rate(sink.stats())
        bound = MAX_IN_FLIGHT / 0.020
        sink.close()
        sink = Sink("--latency-ms", "20")
        naive_slow = naive_loop(cluster, sink, "bench", 200)
        sink.close()
        rows["6_latency_20ms"] = {
            "records_per_s": slow,
            "bound": bound,
            "ratio_to_bound": slow / bound,
            "naive_records_per_s": naive_slow,
            "bridge_vs_naive": slow / naive_slow,
        }

        limited_n = 1500 if args.quick else 3000
        produce(cluster, "limited", limited_n)
        sink = Sink("--rate", "100", "--burst", "500")
        run_bridge(
            bridge_config(cluster, sink, "limited", "limited", rate_limit={"per_second": 100, "burst": 500}),
            workdir,
        )
        stats = sink.stats()
        steady = delivery_rate(stats, skip_first=500)
        rows["7_rate_limited"] = {
            "achieved_per_s": steady,
            "limit": 100,
            "ratio": steady / 100,
            "status_429": stats["status_429"],
        }
        sink.close()

        rows["8_backlog_memory"] = {
            "backlog": backlog,
            "peak_rss_mb": peak_rss_with_backlog(cluster, workdir, backlog, 20 if not args.quick else 8),
            "cpu_us_per_record_single": rows["3_bridge_single"]["cpu_us_per_record"],
            "cpu_us_per_record_batch": rows["4_bridge_batch"]["cpu_us_per_record"],
        }
    report(rows, n)


def report(rows: dict[str, Any], n: int) -> None:
    meta = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "records": n,
        "max_in_flight": MAX_IN_FLIGHT,
    }
    (ROOT / "bench/results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    r = rows
    slow = r["6_latency_20ms"]
    lines = [
        f"bench {meta['date']}, {meta['cores']} cores, {n} records, max_in_flight {MAX_IN_FLIGHT}",
        f"1 consume+decode ceiling      {r['1_consume_decode_ceiling']['records_per_s']:>10,.0f} rec/s",
        f"2 post-only ceiling           {r['2_post_ceiling']['commands_per_s']:>10,.0f} cmd/s",
        f"3 bridge, one per request     {r['3_bridge_single']['records_per_s']:>10,.0f} rec/s  "
        f"ratio to min(1,2) {r['3_bridge_single']['ratio_to_ceiling']:.2f}",
        f"4 bridge, batch mode          {r['4_bridge_batch']['records_per_s']:>10,.0f} rec/s  "
        f"ratio to 1 {r['4_bridge_batch']['ratio_to_consume_ceiling']:.2f}",
        f"5 naive loop                  {r['5_naive_loop']['records_per_s']:>10,.0f} rec/s  "
        f"bridge (3) / naive {r['5_naive_loop']['bridge_ratio']:.1f}x",
        f"6 sink latency 20 ms          {r['6_latency_20ms']['records_per_s']:>10,.0f} rec/s  "
        f"ratio to bound {r['6_latency_20ms']['bound']:.0f}/s {r['6_latency_20ms']['ratio_to_bound']:.2f}; "
        f"naive {slow['naive_records_per_s']:.0f} rec/s, bridge {slow['bridge_vs_naive']:.0f}x",
        f"7 rate-limited 100/s b500     {r['7_rate_limited']['achieved_per_s']:>10,.1f} /s     "
        f"ratio {r['7_rate_limited']['ratio']:.3f}, 429s {r['7_rate_limited']['status_429']}",
        f"8 backlog {r['8_backlog_memory']['backlog']:,}, sink down: peak RSS "
        f"{r['8_backlog_memory']['peak_rss_mb']:.0f} MB; CPU per record "
        f"{r['8_backlog_memory']['cpu_us_per_record_single']:.0f} us (3), "
        f"{r['8_backlog_memory']['cpu_us_per_record_batch']:.0f} us (4)",
        "  broker requests/s (of them commits): "
        + ", ".join(
            f"({row[0]}) {r[row]['broker_requests_per_s']:.0f} ({r[row]['commits_per_s']:.1f})"
            for row in ("3_bridge_single", "4_bridge_batch")
        ),
    ]
    print("\n".join(lines))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(figures(meta, r))


FIGURES = ROOT / "docs" / "figures" / "throughput.md"


def figures(meta: dict[str, Any], r: dict[str, Any]) -> str:
    """The measured rows as docs/figures/throughput.md (generated: run `make bench` again)."""
    one = r["3_bridge_single"]
    batch = r["4_bridge_batch"]
    naive = r["5_naive_loop"]
    slow = r["6_latency_20ms"]
    limited, backlog = r["7_rate_limited"], r["8_backlog_memory"]

    def broker(row: dict[str, Any]) -> str:
        requests, commits = row["broker_requests_per_s"], row["commits_per_s"]
        return f"broker: {requests:.1f} requests/s, {commits:.1f} of them commits"

    consume, post = r["1_consume_decode_ceiling"], r["2_post_ceiling"]
    rows = [
        ("1", "consume + decode ceiling (no HTTP)", f"{consume['records_per_s']:,.0f} rec/s", ""),
        (
            "2",
            "post-only ceiling (same client and concurrency, no Kafka)",
            f"{post['commands_per_s']:,.0f} cmd/s",
            "",
        ),
        (
            "3",
            "bridge, one command per request",
            f"{one['records_per_s']:,.0f} rec/s",
            f"{one['ratio_to_ceiling']:.2f} of min(1, 2); {broker(one)}",
        ),
        (
            "4",
            "bridge, batch mode (100 calls, 20 ms linger)",
            f"{batch['records_per_s']:,.0f} rec/s",
            f"{batch['ratio_to_consume_ceiling']:.2f} of 1; {broker(batch)}",
        ),
        (
            "5",
            "naive loop (poll, post, commit, one at a time)",
            f"{naive['records_per_s']:,.0f} rec/s",
            f"bridge (3) is {naive['bridge_ratio']:.1f}x",
        ),
        (
            "6",
            "sink answering in 20 ms",
            f"{slow['records_per_s']:,.0f} rec/s",
            f"{slow['ratio_to_bound']:.2f} of the bound {MAX_IN_FLIGHT} / 20 ms = {slow['bound']:,.0f}/s; "
            f"naive loop {slow['naive_records_per_s']:.0f} rec/s, bridge {slow['bridge_vs_naive']:.0f}x",
        ),
        (
            "7",
            "limited to 100/s burst 500, sink enforcing the same bucket",
            f"{limited['achieved_per_s']:.1f} /s steady",
            f"{limited['ratio']:.3f} of the limit, {limited['status_429']} x 429",
        ),
        (
            "8",
            f"{backlog['backlog']:,}-record backlog, sink down",
            f"peak RSS {backlog['peak_rss_mb']:.0f} MB",
            f"CPU per record: {backlog['cpu_us_per_record_single']:.0f} µs (3), "
            f"{backlog['cpu_us_per_record_batch']:.0f} µs (4), start-up included",
        ),
    ]
    table = ["| row | what | figure | ratio |", "| --- | --- | --- | --- |"]
    table += [f"| {n} | {what} | {figure} | {ratio} |" for n, what, figure, ratio in rows]
    return (
        "# Throughput figures\n\n<!-- generated by `make bench`; do not edit: run it again -->\n\n"
        f"Measured by `make bench` on {meta['date']}, on {meta['cores']} cores ({meta['machine']}, "
        f"Python {meta['python']}): librdkafka's mock cluster, the sink of `bench/sink.py` and the bridge "
        f"as a subprocess, {meta['records']:,} records (1,000 keys, 6 partitions), `max_in_flight` "
        f"{meta['max_in_flight']}, one rule, the default 100 ms commit interval. What each row measures: "
        "[throughput.md](../throughput.md).\n\n" + "\n".join(table) + "\n"
    )


if __name__ == "__main__":
    main()
