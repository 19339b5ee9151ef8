"""The fuzzing harness: records carrying anything, through the record path in process.

The real decoders (JSON; Avro through the registry, with several schemas including a
recursive one; plain Avro with a local schema), the real rules and templates, and the
real dead-letter writer (:class:`~bridge.kafka.deadletter.DeadLetters`, its headers
encoded and its size checked by a real confluent-kafka producer) run behind fakes for
Kafka and Intilery (``tests/recordpath.py``). :meth:`Harness.check` runs a batch of
records, each between good events on the same key, and asserts the invariants:

- the record path never raises and the bridge ends on its own with exit code 0;
- every record ends delivered, skipped (no rule matched) or dead-lettered, and the
  commit reaches the end of every partition;
- every good event is delivered once;
- every dead letter encodes and fits 1 MB (``message.max.bytes``);
- a source record's own ``x-bridge-*`` headers are kept under ``x-source-``, never taken
  for the bridge's;
- the same bytes read back as audit entries (another writer may share the audit topic:
  the look-up after a crash, ``trace --user``) are an entry or nothing, never a crash.

Used by ``tests/unit/test_fuzz_record_path.py`` (hypothesis, in ``make test``, which also
replays ``tests/corpus/``) and ``tests/fuzz.py`` (``make fuzz``: coverage-guided with
atheris, or hypothesis with a large budget), which saves every failing input to
``tests/corpus/`` in the form :func:`save` writes and :func:`load_corpus` reads.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bridge.decode.registry import SchemaRegistry
from bridge.kafka import auditentry
from bridge.kafka.deadletter import (
    BRIDGE_HEADER,
    HEADERS_OMITTED,
    KEY_OMITTED,
    VALUE_OMITTED,
    DeadLetters,
    forwarded,
)
from bridge.kafka.sentlog import once_entry, sent_entry
from bridge.model import Record
from bridge.ops.story import _delivered
from bridge.rules.mapping import Alike, compile_rules
from bridge.runtime.health import EXIT_OK
from tests.recordpath import build, load_config
from tests.support import FakeRegistryClient, sms_event

CORPUS = Path(__file__).parent / "corpus"
ROOT = Path(__file__).parent.parent
MAX_MESSAGE_BYTES = 1_000_000
JSON_TOPIC = "bookings"
AVRO_TOPIC = "bookings-avro"
PLAIN_TOPIC = "bookings-plain"
TOPICS = (JSON_TOPIC, AVRO_TOPIC, PLAIN_TOPIC)

RECURSIVE = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
MANY_KINDS = {
    "type": "record",
    "name": "Kinds",
    "fields": [
        {"name": "nothing", "type": {"type": "array", "items": "null"}},
        {"name": "names", "type": {"type": "map", "values": "string"}},
        {"name": "either", "type": ["null", "long", "string"]},
        {"name": "suit", "type": {"type": "enum", "name": "Suit", "symbols": ["HEART", "SPADE"]}},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "ratio", "type": "double"},
    ],
}
TREE = {
    "type": "record",
    "name": "Tree",
    "fields": [
        {"name": "type", "type": "string"},
        {"name": "children", "type": {"type": "array", "items": "Tree"}},
        {"name": "labels", "type": {"type": "map", "values": ["null", "Tree"]}},
    ],
}
# The shapes review found the first bounds missed (each killed the process): recursion
# through an Avro error type, and a recursive record under a top-level union.
ERROR = {"type": "error", "name": "E", "fields": [{"name": "n", "type": ["null", "E"]}]}
ERROR_TYPE = {"type": "record", "name": "Failure", "fields": [{"name": "e", "type": ERROR}]}
UNION_TOP = ["null", RECURSIVE]
# Schema ids the fake registry knows; the booking schema is the example one.
SCHEMA_IDS = {1: "booking", 2: "recursive", 3: "kinds", 4: "tree", 5: "error type", 6: "union top"}


def _schemas() -> dict[int, str]:
    booking = (ROOT / "schemas" / "booking_abandoned.avsc").read_text()
    texts = {"booking": booking, "recursive": json.dumps(RECURSIVE), "kinds": json.dumps(MANY_KINDS)}
    texts |= {"tree": json.dumps(TREE), "error type": json.dumps(ERROR_TYPE)}
    texts["union top"] = json.dumps(UNION_TOP)
    return {schema_id: texts[name] for schema_id, name in SCHEMA_IDS.items()}


class CheckedProducer:
    """The dead-letter writer's producer: each write goes through a real confluent-kafka
    producer's ``produce()`` (which encodes the headers and refuses more than
    ``message.max.bytes`` as librdkafka does), then is acknowledged at once; the real one
    never connects (its queue is purged)."""

    def __init__(self) -> None:
        self._real = Producer(
            {
                "bootstrap.servers": "127.0.0.1:9",
                "message.max.bytes": MAX_MESSAGE_BYTES,
                "log_level": 0,
                "error_cb": lambda _: None,
            }
        )
        self.writes: list[dict[str, Any]] = []
        self._reports: list[Any] = []

    def produce(self, topic: str, **write: Any) -> None:
        on_delivery = write.pop("on_delivery")
        self._real.produce(topic, **write)  # raises what the real one raises: size, types, encoding
        self._real.purge(in_queue=True, in_flight=False)
        size = len(write.get("key") or b"") + len(write.get("value") or b"")
        size += sum(len(name.encode()) + len(value or b"") for name, value in write["headers"])
        assert size <= MAX_MESSAGE_BYTES, f"a dead letter of {size} bytes was accepted"
        self.writes.append({"topic": topic, **write})
        self._reports.append(lambda: on_delivery(None, None))

    def poll(self, timeout: float) -> int:
        reports, self._reports = self._reports, []
        for report in reports:
            report()
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def good(offset: int, key: bytes = b"C-1") -> Record:
    """A good event: one send_sms to the customer ``GOOD-<offset>``."""
    event = {**sms_event(offset, 1), "customer": {"id": f"GOOD-{offset}"}}
    return Record(JSON_TOPIC, 0, offset, key, json.dumps(event).encode(), [], 1_700_000_000_000)


def avro_long(n: int) -> bytes:
    """An Avro long (zig-zag varint): counts and lengths in hand-made Avro bytes."""
    n, out = (n << 1) ^ (n >> 63), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def framed(schema_id: int, body: bytes) -> bytes:
    """A value in the schema registry's wire format."""
    return b"\x00" + struct.pack(">I", schema_id) + body


class Harness:
    """One configuration (three topics, the test rules), checked record batch by batch."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "node.avsc").write_text(json.dumps(RECURSIVE))
        source = {
            "topics": [
                JSON_TOPIC,
                {"name": AVRO_TOPIC, "format": "avro"},
                {"name": PLAIN_TOPIC, "format": "avro", "schema": "node.avsc"},
            ],
            "format": "json",
            "schema_registry": {"url": "http://registry.invalid"},
        }
        self.loaded = load_config(directory, source)
        registry = SchemaRegistry("http://registry.invalid", client=FakeRegistryClient(_schemas()))
        self.loaded.decoder.registry = registry
        self.runs = 0
        # The same rules, each condition written another way: the shadow runs them all again.
        rules = self.loaded.config.model_dump(mode="json")["rules"]
        for rule in rules:
            rule["when"] = f"({rule['when']})" if rule.get("when") else "`true`"
        self.shadow, problems = compile_rules(rules, [JSON_TOPIC, AVRO_TOPIC, PLAIN_TOPIC])
        assert problems == [] and self.shadow.alike(self.loaded.mapper) == Alike(), problems

    def check(self, hostile: list[Record]) -> dict[str, Any]:
        """Run ``hostile`` records (topic, key, value and headers as given; offsets are
        set here), each between good events on its key, and assert the invariants."""
        records: list[Record] = []
        ends, goods = Counter[str](), []  # per topic, the next offset; the good events' offsets
        for bad in [*hostile, None]:
            goods.append(ends[JSON_TOPIC])
            key = bad.key if bad is not None and bad.key is not None else b"C-1"
            records.append(good(ends[JSON_TOPIC], key))
            ends[JSON_TOPIC] += 1
            if bad is not None:
                at = ends[bad.topic]
                records.append(Record(bad.topic, 0, at, bad.key, bad.value, bad.headers, bad.timestamp_ms))
                ends[bad.topic] += 1
        producer = CheckedProducer()
        dead_letters = DeadLetters("bookings.dlq", producer, retry_delay_s=0.001)
        # The same rules shadowed beside the live ones: the shadow's path takes every record too.
        bridge, source, sender, _ = build(
            self.directory,
            [records],
            dead_letters=dead_letters,
            loaded=self.loaded,
            shadow=self.shadow,
        )
        code = asyncio.run(asyncio.wait_for(bridge.run(), 60))
        self.runs += 1
        assert code == EXIT_OK, bridge.failure
        committed: dict[tuple[str, int], int] = {}
        for position in source.commits:
            key = (position.topic, position.partition)
            committed[key] = max(committed.get(key, 0), position.offset)
        assert committed == {(topic, 0): end for topic, end in ends.items()}, "commits must reach every end"
        counts = bridge.counts
        assert counts["consumed"] == len(records) and dead_letters.pending == 0
        delivered = Counter(str(c.body.get("userId")) for c in sender.sent)
        assert all(delivered[f"GOOD-{offset}"] == 1 for offset in goods), "every good event, once"
        assert len(producer.writes) == counts["dead_lettered"]
        shadowed = bridge.parts.outcomes.metrics.rules.shadow_commands.counts
        assert {kind for _, kind in shadowed} == {"unchanged"}, f"the same rules, shadowed: {shadowed}"
        omitted = {VALUE_OMITTED: "value", HEADERS_OMITTED: "headers", KEY_OMITTED: "key and time"}
        reasons = [
            (
                headers["x-bridge-error-class"].decode(),
                headers["x-bridge-error-reason"].decode(),
                [what for header, what in omitted.items() if header in headers],
            )
            for headers in (dict(write["headers"]) for write in producer.writes)
        ]
        by_position = {(r.topic, r.offset): r for r in records}
        for write in producer.writes:  # a source's own x-bridge-* header is never taken for ours
            headers = dict(write["headers"])
            source = by_position[
                headers["x-bridge-source-topic"].decode(), int(headers["x-bridge-source-offset"])
            ]
            for name, value in source.headers if HEADERS_OMITTED not in headers else ():
                if name.lower().startswith(BRIDGE_HEADER):
                    assert (forwarded(name), value) in write["headers"] and forwarded(name) != name
        for record in hostile:  # as audit entries, their key taken for the customer's
            sent_entry(record.value, "bridge")
            if (entry := auditentry.parse(record.value)) is not None:
                once_entry(entry)  # as the customer-safety state reads them back at start-up
            _delivered(record, (record.key or b"C-1").decode(errors="replace"))
        return {"records": len(records), "dead_lettered": counts["dead_lettered"], "reasons": reasons}


def dump(records: list[Record]) -> dict[str, Any]:
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    return {
        "records": [
            {
                "topic": r.topic,
                "key": b64(r.key),
                "value": b64(r.value),
                "headers": [[name, b64(value)] for name, value in r.headers],
                "timestamp": r.timestamp_ms,
            }
            for r in records
        ]
    }


def undump(data: dict[str, Any]) -> list[Record]:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)

    return [
        Record(
            r["topic"],
            0,
            0,
            raw(r["key"]),
            raw(r["value"]),
            [(name, raw(value)) for name, value in r["headers"]],
            r.get("timestamp"),
        )
        for r in data["records"]
    ]


def save(records: list[Record], note: str, directory: Path = CORPUS) -> Path:
    """Keep a failing input: JSON (bytes in base64, header names escaped as JSON escapes
    them), gzipped when over 64 KB."""
    text = json.dumps({"note": note, **dump(records)}, indent=1).encode()
    directory.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(text).hexdigest()[:16]
    if len(text) > 64 * 1024:
        path = directory / f"{name}.json.gz"
        path.write_bytes(gzip.compress(text, mtime=0))
    else:
        path = directory / f"{name}.json"
        path.write_bytes(text)
    return path


def read_kept(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    result: dict[str, Any] = json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
    return result


def load_corpus(directory: Path = CORPUS) -> list[tuple[str, list[Record]]]:
    paths = sorted([*directory.glob("*.json"), *directory.glob("*.json.gz")])
    return [(path.name, undump(read_kept(path))) for path in paths]


def harness() -> Harness:
    return Harness(Path(tempfile.mkdtemp(prefix="bridge-fuzz-")))
