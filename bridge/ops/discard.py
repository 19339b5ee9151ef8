"""``intilery-bridge redrive --discard``: acknowledge the dead letters that can never
succeed (bytes no decoder reads, a command Intilery will always refuse), so the next
redrive passes them over and exits 0.

Reads the dead-letter topic as ``redrive`` does (from where the redrive group stopped,
with the same filters, passing over what an earlier run finished); each dead letter the
filters pick is discarded: named (``dead_letter_discarded``, ids only), given an entry in
the audit topic when there is one (``"outcome": "discarded"``, which ``trace`` tells),
and named finished in the redrive group's commit, made once every entry is written. Those
the filters leave stay for a later run. Nothing is sent. ``--dry-run`` prints each one as
a JSON line instead and commits nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from bridge.errors import BrokerError
from bridge.kafka import auditentry
from bridge.kafka.audit import AuditLog
from bridge.kafka.consumer import commit_maps, committed_map
from bridge.kafka.offsets import PartitionOffsets
from bridge.kafka.window import Window, read_window
from bridge.model import Record
from bridge.ops.loading import Loaded
from bridge.ops.plural import counted
from bridge.ops.progress import Progress
from bridge.runtime.records import origin_or_read

log = structlog.get_logger("bridge.ops.discard")
AUDIT_WAIT_S = 30.0  # for the audit topic to take the entries, before nothing is committed


@dataclass
class Discarding:
    """What a discard run found: per partition, which offsets are finished; the entries of
    the dead letters it discards; how many it read and left."""

    window: Window
    group: str  # the live group, which the audit entries name
    partitions: dict[int, PartitionOffsets] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0
    left: int = 0

    def take(self, record: Record) -> dict[str, Any] | None:
        """Track ``record``; its entry when it is discarded, None when it is passed over
        (finished by an earlier run) or left (the filters do not pick it)."""
        self.read += 1
        part = self.partitions[record.partition]
        part.add(record.offset)
        if part.finished_earlier(record.offset):
            part.finish(record.offset)
            return None
        if not self.window.selects(record):
            self.left += 1
            part.leave(record.offset)
            return None
        part.finish(record.offset)
        entry = auditentry.discarded(record, origin_or_read(record, self.window), self.window, self.group)
        self.entries.append(entry)
        return entry

    def commits(self) -> dict[int, tuple[int, str]]:
        """Per partition read, the offset to commit and its finished-offsets map."""
        found = {}
        for partition, part in self.partitions.items():
            if (taken := part.to_commit(force=True)) is not None:
                found[partition] = taken[:2]
        return found


def discard(loaded: Loaded, window: Window, consumer: Any, *, dry_run: bool, out: TextIO, err: TextIO) -> int:
    """Discard what the window's filters pick (see the module); the exit code."""
    run = Discarding(window, str(loaded.config.kafka["group.id"]))
    assignment = window.assignment()
    consumer.assign(assignment)
    earlier = {tp.partition: committed_map(tp).finished for tp in consumer.committed(assignment, 10)}
    run.partitions = {tp.partition: PartitionOffsets(earlier.get(tp.partition, ())) for tp in assignment}
    progress = Progress("redrive --discard", window.total, err, made="discarded")
    for record in read_window(consumer, window):
        entry = run.take(record)
        progress.update(run.read, len(run.entries))
        if entry is None:
            continue
        if dry_run:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        else:
            log.info("dead_letter_discarded", **_ids(entry))
    progress.close()
    left = f", {run.left} not selected by the filters, left in {window.topic}" if run.left else ""
    read = f"{run.read} of {counted(window.total, 'record')} read"
    if dry_run:
        done = f"{len(run.entries)} would be discarded{left} (nothing discarded, nothing committed)"
        print(f"redrive --discard --dry-run of {window.topic}: {read}, {done}", file=err)
        return 0
    audit_topic = loaded.config.delivery.audit_topic
    if audit_topic is not None and run.entries:
        asyncio.run(_audited(audit_topic, loaded.config.kafka, run.entries))
    commit_maps(consumer, window.topic, run.commits())
    audited = ", each with an audit entry" if audit_topic is not None and run.entries else ""
    print(
        f"redrive --discard of {window.topic}: {read}; {len(run.entries)} discarded{audited}{left}", file=err
    )
    log.info(
        "discard_finished", topic=window.topic, group=window.group, read=run.read, discarded=len(run.entries)
    )
    return 0


def _ids(entry: dict[str, Any]) -> dict[str, Any]:
    """A discarded dead letter's log fields: where it was and came from, its class; ids only."""
    source, dead = entry["source"], entry["dead_letter"]
    return {
        "dead_letter": f"{dead['topic']}[{dead['partition']}]@{dead['offset']}",
        "source_topic": source["topic"],
        "partition": source["partition"],
        "offset": source["offset"],
        "rule": entry["rule"],
        "userId": entry["userId"],
        "error_class": entry["error_class"],
    }


async def _audited(topic: str, kafka: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` to the audit topic; a :class:`BrokerError` when it has not taken
    them all within :data:`AUDIT_WAIT_S` (then nothing is committed: a rerun discards them again)."""
    audit = AuditLog.create(topic, kafka)
    written = 0

    def one_more() -> None:
        nonlocal written
        written += 1

    for entry in entries:
        audit.send(entry, None, one_more)
    deadline = time.monotonic() + AUDIT_WAIT_S
    while written < len(entries) and time.monotonic() < deadline:
        audit.poll()
        await asyncio.sleep(0.05)
    audit.flush(1.0)
    if written < len(entries):
        reason = audit.last_failure or "no answer"
        raise BrokerError(f"writing to the audit topic {topic}: {reason}; nothing discarded, run it again")
