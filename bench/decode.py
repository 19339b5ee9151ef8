"""Decode throughput: records/s for JSON vs Avro (registry-framed and plain),
decode alone and decode + the example rules, measured in one run.

    .venv/bin/python bench/decode.py [records]
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.decode.avro import jsonable, load_schema  # noqa: E402
from bridge.decode.decoder import decode_json  # noqa: E402
from bridge.ops.loading import load  # noqa: E402


def samples(count: int) -> list[dict[str, Any]]:
    schema = load_schema(ROOT / "schemas/booking_abandoned.avsc")
    lines = (ROOT / "examples/avro-events/booking_abandoned.jsonl").read_text()
    base = list(fastavro.json_reader(io.StringIO(lines), schema))
    return [base[i % len(base)] for i in range(count)]


def rate(count: int, work: Callable[[], None]) -> float:
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        work()
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    os.environ.setdefault("INTILERY_AUTH_TOKEN", "bench")
    _, mapper, decoder = load(str(ROOT / "examples/bridge-avro.yaml"))
    schema = load_schema(ROOT / "schemas/booking_abandoned.avsc")
    events = samples(count)
    assert decoder.registry is not None
    decoder.registry._schemas[1] = schema  # pre-cached, as after the first record of a schema id

    def avro_bytes(event: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, event)
        return buffer.getvalue()

    plain = [avro_bytes(e) for e in events]
    framed = [b"\x00" + struct.pack(">I", 1) + p for p in plain]
    # The same events as a JSON producer would write them.
    json_values = [json.dumps(jsonable(e)).encode() for e in events]
    meta = {"topic": "bookings-avro", "partition": 0, "offset": 0, "key": None, "timestamp": 0, "headers": {}}
    rows = []
    for label, topic, values in (
        ("json", "bookings", json_values),
        ("avro (registry framing)", "bookings-avro", framed),
    ):
        decode = decoder.decode if topic != "bookings" else (lambda _t, v: decode_json(v))
        decode_only = rate(count, lambda d=decode, t=topic, vs=values: [d(t, v) for v in vs] and None)
        decode_map = rate(
            count, lambda d=decode, t=topic, vs=values: [mapper.map(d(t, v), meta) for v in vs] and None
        )
        rows.append((label, decode_only, decode_map))
    sizes = f"{len(plain[0])} bytes Avro, {len(json_values[0])} bytes JSON"
    print(f"records: {count}, event: booking_abandoned ({sizes})")
    print(f"{'format':<26}{'decode rec/s':>14}{'decode+map rec/s':>18}")
    for label, decode_only, decode_map in rows:
        print(f"{label:<26}{decode_only:>14,.0f}{decode_map:>18,.0f}")
    print(f"avro/json ratio: decode {rows[1][1] / rows[0][1]:.2f}, decode+map {rows[1][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()
