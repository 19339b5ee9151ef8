"""Rows 3 and 4 of `make bench`, paired: this checkout's bridge against a baseline's.

On a shared, noisy machine two `make bench` runs minutes apart differ by more
than most changes do. This runs the two bridges in alternation on the same mock
cluster, topic and sink, several rounds (the order flipped every round), and
prints each one's median throughput, CPU per record and broker requests per
second, and the ratios. Nothing is asserted.

    git worktree add /tmp/baseline <commit>
    .venv/bin/python bench/compare.py --baseline /tmp/baseline [--rounds 4] [--commit-interval-ms N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Sink, bridge_config, delivery_rate, produce, run_bridge_counting  # noqa: E402
from bridge.devtools.mockcluster import MockCluster  # noqa: E402

RECORDS = 20_000
ROWS = {"3 one per request": {}, "4 batch mode": {"delivery": {"batch": {"max_calls": 100, "linger_ms": 20}}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--baseline", type=Path, required=True, help="a checkout of the version to compare with"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--commit-interval-ms", type=int, help="delivery.commit_interval_ms for both (default: their own)"
    )
    args = parser.parse_args()
    checkouts = {"baseline": args.baseline.resolve(), "this": ROOT}
    results: dict[tuple[str, str], list[dict[str, float]]] = {(c, r): [] for c in checkouts for r in ROWS}
    with MockCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        cluster.create_topic("bench.dlq", 1)
        produce(cluster, "bench", RECORDS)
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
            for name in order:
                for row, extra in ROWS.items():
                    sink = Sink()
                    group = f"{name}-{row[0]}-{round_}"
                    delivery = {**extra.get("delivery", {})}
                    if args.commit_interval_ms is not None:
                        delivery["commit_interval_ms"] = args.commit_interval_ms
                    config = bridge_config(cluster, sink, "bench", group, **{**extra, "delivery": delivery})
                    usage, figures = run_bridge_counting(cluster, config, Path(tmp), checkouts[name])
                    figures["cpu_us_per_record"] = (usage.ru_utime + usage.ru_stime) / RECORDS * 1e6
                    figures["records_per_s"] = delivery_rate(sink.stats())
                    results[(name, row)].append(figures)
                    sink.close()
    for row in ROWS:
        medians = {
            name: {
                key: statistics.median(r[key] for r in results[(name, row)])
                for key in results[(name, row)][0]
            }
            for name in checkouts
        }
        for name, m in medians.items():
            runs = ", ".join(f"{r['records_per_s']:,.0f}" for r in results[(name, row)])
            print(
                f"row {row}, {name:8}: {m['records_per_s']:>8,.0f} rec/s (runs {runs}); "
                f"CPU {m['cpu_us_per_record']:.0f} us/record; "
                f"broker {m['broker_requests_per_s']:.1f} requests/s, {m['commits_per_s']:.1f} commits/s"
            )
        this, base = medians["this"], medians["baseline"]
        print(
            f"row {row}: this / baseline: throughput {this['records_per_s'] / base['records_per_s']:.3f}, "
            f"CPU per record {this['cpu_us_per_record'] / base['cpu_us_per_record']:.3f}"
        )


if __name__ == "__main__":
    main()
