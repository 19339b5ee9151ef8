"""What `run --shadow` costs the live path: per record, decode + the live rules, against
decode + the live rules + the candidate's beside them (compared, counted), against
decode + the live rules + the candidate's own mapping of the same event (all its rules,
nothing compared); for a candidate changing one rule and one changing every rule.

    .venv/bin/python bench/shadow.py [records] [--figures]

``--figures`` (as `make bench` runs it) also rewrites docs/figures/shadow.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.convert import record_commands  # noqa: E402
from bridge.decode.decoder import Decoder  # noqa: E402
from bridge.errors import RecordError  # noqa: E402
from bridge.metrics import Metrics  # noqa: E402
from bridge.model import Record  # noqa: E402
from bridge.ops.loading import load, load_offline  # noqa: E402
from bridge.rules.mapping import Mapper  # noqa: E402
from bridge.runtime.shadow import Shadow  # noqa: E402

FIGURES = ROOT / "docs" / "figures" / "shadow.md"
ROUNDS = 7


def seconds_per_record(records: list[Record], work: Callable[[Record], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    for record in records:
        with contextlib.suppress(RecordError):
            work(record)
    return (time.perf_counter() - started) / len(records)


CANDIDATES = {  # name: how the candidate differs from examples/bridge.yaml's rules
    "one rule changed": lambda rules: rules[1]["emit"].update(assetId="changed"),
    "every rule changed": lambda rules: [rule["emit"].update(userId="{{ customer.id }}-2") for rule in rules],
}


def candidate_rules(change: Callable[[list[dict[str, Any]]], object]) -> Mapper:
    config = yaml.safe_load((ROOT / "examples/bridge.yaml").read_text())
    change(config["rules"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "candidate.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return load_offline(str(Path(tmp) / "candidate.yaml"))[1]


def mapped_twice(decoder: Decoder, mapper: Mapper, candidate: Mapper, record: Record) -> None:
    """The live path plus the candidate's own mapping of the same decoded event (all its
    rules, nothing compared; a record the live rules cannot map too, as the candidate may):
    what the candidate's mapping adds to the live path."""
    event, meta = decoder.decode(record.topic, record.value), record.meta()
    try:
        mapper.map(event, meta)
    finally:
        with contextlib.suppress(RecordError):
            candidate.map(event, meta)


def measure(records: list[Record], decoder: Decoder, mapper: Mapper, candidate: Mapper) -> str:
    """One candidate's line: medians of alternated rounds (the machine is shared and noisy)."""
    shadow = Shadow(candidate, Metrics(), clock=lambda: 0.0)  # one difference line per rule in all
    runs: dict[str, list[float]] = {"live": [], "shadowed": [], "twice": [], "as_live": []}
    for _ in range(ROUNDS):
        runs["live"].append(seconds_per_record(records, lambda r: record_commands(decoder, mapper, r)))
        runs["shadowed"].append(
            seconds_per_record(records, lambda r: record_commands(decoder, mapper, r, beside=shadow))
        )
        runs["twice"].append(
            seconds_per_record(records, lambda r: mapped_twice(decoder, mapper, candidate, r))
        )
        runs["as_live"].append(seconds_per_record(records, lambda r: record_commands(decoder, candidate, r)))
    live, shadowed, twice, as_live = (statistics.median(runs[name]) for name in runs)
    extra, own = shadowed - live, twice - live
    return (
        f"live {live * 1e6:.1f} us, live + shadow {shadowed * 1e6:.1f} us (+{extra * 1e6:.1f} us), "
        f"live + the candidate's own mapping {twice * 1e6:.1f} us (+{own * 1e6:.1f} us); the "
        f"candidate as the live rules (decode + map) {as_live * 1e6:.1f} us: the shadow costs "
        f"{extra / own:.2f} of the candidate's own mapping, {extra / as_live:.2f} of it as the live rules"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", type=int, nargs="?", default=20_000)
    parser.add_argument("--figures", action="store_true", help=f"also rewrite {FIGURES.relative_to(ROOT)}")
    args = parser.parse_args()
    os.environ.setdefault("INTILERY_AUTH_TOKEN", "bench")
    values = [line for line in (ROOT / "examples/events/bookings.jsonl").read_bytes().splitlines() if line]
    records = [Record("bookings", 0, n, b"k", values[n % len(values)], [], 0) for n in range(args.records)]
    _, mapper, decoder = load(str(ROOT / "examples/bridge.yaml"))
    candidates = {name: candidate_rules(change) for name, change in CANDIDATES.items()}
    gc.freeze()  # as the bridge does once started (runtime.factory.start_up_frozen)
    lines = [f"{name}: {measure(records, decoder, mapper, rules)}" for name, rules in candidates.items()]
    print("\n".join(lines))
    if args.figures:
        FIGURES.write_text(
            "# What shadow rules cost\n\n"
            "<!-- generated by `make bench` (bench/shadow.py); do not edit: run it again -->\n\n"
            f"Measured by `bench/shadow.py` on {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}: per record, {args.records:,} records of "
            "examples/events/bookings.jsonl (one in ten undecodable) through examples/bridge.yaml's "
            "rules, with a candidate that changes one rule's asset and with one that changes every "
            f"rule's userId; medians of {ROUNDS} alternated rounds.\n\n"
            "```\n" + "\n".join(lines) + "\n```\n\n"
            "The shadow decodes nothing again: it maps the event the live rules decoded, and runs "
            "only the candidate's rules that differ from the live ones (a rule defined alike makes "
            "the same command, so the live one is taken as the candidate's). Then it matches and "
            "counts the commands (by their bytes first, field by field only when they differ; the "
            "counts are a plain dict read when scraped). With every rule's output changed it runs "
            "each rule whose condition held (the conditions being the live ones', where one made "
            "no command so does the other), and the matching (about 2 us a record) is what it adds "
            "to the candidate's own mapping: within the rounds' spread of it.\n"
        )


if __name__ == "__main__":
    main()
