"""What a rules change would do to real traffic: every record mapped by the current
rules and by the candidate, their commands matched and compared (``intilery-bridge
diff``).

Commands are matched by record, rule name and position within that rule's output:
``added`` (only the candidate sends it), ``removed`` (only the current rules send it),
``changed`` (both, with different bodies or actions), ``unchanged``. A renamed rule
is removed plus added. A record that one rule set cannot map is that set's dead
letter, and all the other's commands for it are added or removed.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

from bridge.convert import commands_of, preview, record_commands
from bridge.decode.decoder import Decoder
from bridge.errors import RecordError
from bridge.kafka.consumer import asking_kafka
from bridge.kafka.window import Window, read_window, window_reader
from bridge.ops.loading import Loaded
from bridge.ops.mapfile import DecodeLine, events
from bridge.ops.planning import plan
from bridge.ops.plural import counted
from bridge.ops.progress import Progress
from bridge.ops.requests import ReplayRequest
from bridge.rules.difference import KINDS, Mapped, compared, mapped, matched
from bridge.rules.mapping import Mapper


@dataclass
class Comparison:
    """The two rule sets' outcomes over the same records, counted, with samples."""

    samples_wanted: int = 5  # of each kind of difference
    order: list[str] = field(default_factory=list)  # the rules as the files list them
    ignore_max_age: bool = False  # else what run would skip as stale is not sent by either
    records: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    rules: dict[str, Counter[str]] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, where: dict[str, Any], current: Mapped, candidate: Mapped, record_ms: int | None) -> None:
        """One record (``where``: its topic, partition, offset) and what each set made of it;
        of those, what ``run`` would send of it when read (at ``record_ms``) is compared."""
        self.records += 1
        now_ms = None if self.ignore_max_age else record_ms
        current, candidate = (sent(outcome, now_ms) for outcome in (current, candidate))
        for name, outcome in (("current", current), ("candidate", candidate)):
            if isinstance(outcome, RecordError):
                self.dead_letters[name] += 1
            else:
                self.commands[name] += len(outcome)
        for rule, old, new in matched(current, candidate):
            kind, lines = compared(old, new)
            self.commands[kind] += 1
            self.rules.setdefault(rule, Counter())[kind] += 1
            if kind == "unchanged":
                continue
            command = new if new is not None else old
            assert command is not None  # one of them, by the keys' union
            if (user := command.body.get("userId")) is not None:
                self.customers.add(str(user))
            if sum(sample["difference"] == kind for sample in self.samples) < self.samples_wanted:
                self.samples.append({**where, "rule": rule, "difference": kind, "fields": lines})

    @property
    def differing(self) -> int:
        """Commands added, removed or changed so far."""
        return sum(self.commands[kind] for kind in KINDS[:3])

    @property
    def differs(self) -> bool:
        return bool(self.differing) or self.dead_letters_differ

    @property
    def dead_letters_differ(self) -> bool:
        return self.dead_letters["current"] != self.dead_letters["candidate"]

    def as_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "commands": {name: self.commands[name] for name in ("current", "candidate", *KINDS)},
            "customers": {"affected": len(self.customers)},
            "rules": {rule: {kind: counts[kind] for kind in KINDS} for rule, counts in self.by_rule()},
            "dead_letters": {name: self.dead_letters[name] for name in ("current", "candidate")},
            "samples": self.samples,
        }

    def by_rule(self) -> list[tuple[str, Counter[str]]]:
        """The counts per rule, in the files' order (the candidate's, then rules it dropped)."""
        place = {rule: index for index, rule in enumerate(self.order)}
        return sorted(self.rules.items(), key=lambda item: place.get(item[0], len(place)))

    def report(self, out: TextIO) -> None:
        counts = self.commands
        records = counted(self.records, "record")
        customers = counted(len(self.customers), "customer")
        out.write(
            f"diff: {records}; commands {counts['current']} now, {counts['candidate']} with the candidate: "
            f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed, "
            f"{counts['unchanged']} unchanged; {customers} affected; dead letters "
            f"{self.dead_letters['current']} now, {self.dead_letters['candidate']} with the candidate\n"
        )
        for rule, kinds in self.by_rule():
            out.write(f"  rule {rule}: " + ", ".join(f"{kinds[kind]} {kind}" for kind in KINDS) + "\n")
        for sample in self.samples:
            place = f"{sample['topic']}[{sample['partition']}]@{sample['offset']}"
            out.write(f"{sample['difference'].upper()}  {place}: rule {sample['rule']}\n")
            for line in sample["fields"]:
                out.write(f"      {line}\n")


def sent(outcome: Mapped, now_ms: int | None) -> Mapped:
    """What ``run`` would send of a record's commands at ``now_ms`` (a dead letter as it is)."""
    return outcome if isinstance(outcome, RecordError) else preview(outcome, now_ms).sent


def comparing(current: Mapper, candidate: Mapper, samples: int, ignore_max_age: bool) -> Comparison:
    """An empty comparison of the two sets, their rules in the files' order."""
    order = candidate.names + [name for name in current.names if name not in candidate.names]
    return Comparison(samples, order, ignore_max_age)


def compare_lines(
    sets: Comparison,
    current: Mapper,
    candidate: Mapper,
    lines: Iterable[bytes],
    topic: str,
    decode: DecodeLine | None,
) -> Comparison:
    """Events as ``map`` reads them (JSON Lines, or the Avro schema's JSON form)."""
    for _, meta, event in events(lines, topic, decode):
        before = mapped(commands_of, current, meta, event)
        after = mapped(commands_of, candidate, meta, event)
        where = {key: meta[key] for key in ("topic", "partition", "offset")}
        sets.add(where, before, after, meta.get("timestamp"))
    return sets


fetched = partial(record_commands, fetch=True)  # a schema not cached yet: fetched, waiting


def compare_window(
    sets: Comparison,
    decoder: Decoder,
    current: Mapper,
    candidate: Mapper,
    consumer: Any,
    windows: list[Window],
) -> Comparison:
    """The records of each window, decoded as ``run`` decodes them (the registry included),
    read by ``consumer`` on its own: assigned, never subscribed, never committing. How far
    it has come is drawn on stderr (:class:`Progress`)."""
    progress = Progress("diff", sum(window.total for window in windows), sys.stderr, made="differing")
    for window in windows:
        consumer.assign(window.assignment())
        for record in read_window(consumer, window):
            where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
            before = mapped(fetched, decoder, current, record)
            after = mapped(fetched, decoder, candidate, record)
            sets.add(where, before, after, record.timestamp_ms)
            progress.update(sets.records, sets.differing)
    progress.close()
    return sets


def window_comparison(
    sets: Comparison, loaded: Loaded, candidate: Mapper, from_time: str, to_time: str | None
) -> Comparison:
    """The source topics from ``from_time`` to ``to_time`` (default: their end now), read
    by a consumer of its own: no group joined, nothing committed, the live group untouched."""
    group = f"{loaded.config.kafka['group.id']}-diff-{uuid.uuid4().hex[:8]}"  # named, never joined
    consumer = window_reader(loaded.config.kafka, group)
    try:
        with asking_kafka("reading the source topics"):
            windows = [
                plan(
                    consumer,
                    topic,
                    group,
                    False,
                    ReplayRequest(topic=topic, from_time=from_time, to_time=to_time),
                )
                for topic in loaded.config.source.topic_names
            ]
            return compare_window(sets, loaded.decoder, loaded.mapper, candidate, consumer, windows)
    finally:
        consumer.close()
