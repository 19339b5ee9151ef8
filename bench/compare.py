"""Rows 3 and 4 of `make bench`, paired: this checkout's bridge against a baseline's.

On a shared, noisy machine two `make bench` runs minutes apart differ by more
than most changes do. This runs the two bridges in alternation on the same mock
cluster, topic and sink, several rounds (the order flipped every round), and
prints each one's median throughput, CPU per record and broker requests per
second, and the ratios. Nothing is asserted.

    git worktree add /tmp/baseline <commit>
    .venv/bin/python bench/compare.py --baseline /tmp/baseline [--rounds 4] [--records N]
        [--commit-interval-ms N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import BATCH, Sink, bridge_config, delivery_rate, produce, run_bridge_counting  # noqa: E402
from bridge.devtools.mockcluster import MockCluster  # noqa: E402

RECORDS = 20_000
ROWS = {"3 one per request": {}, "4 batch mode": {"delivery": BATCH}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--baseline", type=Path, required=True, help="a checkout of the version to compare with"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--records", type=int, default=RECORDS, help="per run (batch mode runs ~1 s on 20,000: noisy)"
    )
    parser.add_argument(
        "--commit-interval-ms", type=int, help="delivery.commit_interval_ms for both (default: their own)"
    )
    parser.add_argument("--figures", type=Path, help="also write the result here (Markdown)")
    args = parser.parse_args()
    checkouts = {"baseline": args.baseline.resolve(), "this": ROOT}
    results: dict[tuple[str, str], list[dict[str, float]]] = {(c, r): [] for c in checkouts for r in ROWS}
    with MockCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        cluster.create_topic("bench.dlq", 1)
        produce(cluster, "bench", args.records)
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
                    figures["cpu_us_per_record"] = (usage.ru_utime + usage.ru_stime) / args.records * 1e6
                    figures["records_per_s"] = delivery_rate(sink.stats())
                    results[(name, row)].append(figures)
                    sink.close()
    lines = [line for row in ROWS for line in summary(row, results, list(checkouts))]
    print("\n".join(lines))
    if args.figures:
        args.figures.parent.mkdir(parents=True, exist_ok=True)
        args.figures.write_text(markdown(args, lines))


def summary(row: str, results: dict[tuple[str, str], list[dict[str, float]]], names: list[str]) -> list[str]:
    """Each checkout's medians for ``row``, then the ratios of this one to the baseline."""
    medians = {
        name: {
            key: statistics.median(r[key] for r in results[(name, row)]) for key in results[(name, row)][0]
        }
        for name in names
    }
    lines = []
    for name, m in medians.items():
        runs = ", ".join(f"{r['records_per_s']:,.0f}" for r in results[(name, row)])
        lines.append(
            f"row {row}, {name:8}: {m['records_per_s']:>8,.0f} rec/s (runs {runs}); "
            f"CPU {m['cpu_us_per_record']:.0f} us/record; "
            f"broker {m['broker_requests_per_s']:.1f} requests/s, {m['commits_per_s']:.1f} commits/s"
        )
    this, base = medians["this"], medians["baseline"]
    lines.append(
        f"row {row}: this / baseline: throughput {this['records_per_s'] / base['records_per_s']:.3f}, "
        f"CPU per record {this['cpu_us_per_record'] / base['cpu_us_per_record']:.3f}"
    )
    return lines


def markdown(args: argparse.Namespace, lines: list[str]) -> str:
    """The comparison as a generated Markdown file (``--figures``)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    base = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.baseline, capture_output=True, text=True
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    interval = f"{args.commit_interval_ms} ms" if args.commit_interval_ms else "each one's default"
    return (
        "# Throughput against an earlier version\n\n"
        "<!-- generated by `bench/compare.py --figures`; do not edit: run it again -->\n\n"
        f"Measured by `bench/compare.py` on {when}, on {os.cpu_count()} cores: this checkout "
        f"({head.stdout.strip() or 'working tree'}) against {base.stdout.strip() or args.baseline.name}, "
        f"rows 3 and 4 of `make bench` in alternation, {args.rounds} rounds of {args.records:,} records, "
        f"commit interval {interval}; medians, and each run's throughput.\n\n```\n"
        + "\n".join(lines)
        + "\n```\n"
    )


if __name__ == "__main__":
    main()
