"""`trace`'s reading of the audit and dead-letter topics takes outside bytes: whatever an
entry or a dead letter holds (another writer's JSON, any header bytes), the story is told
without an exception: hypothesis over arbitrary JSON and bytes."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.model import Record
from bridge.ops.story import Story, _dead_letter, _delivered

USER = "C-1"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        *("source", "rule", "kind", "sent_at", "assetId", "command", "status", "resent", "trace_id"),
        *("outcome", "at", "reason", "error_class"),
    ]
)


def tell(entries: list[dict[str, Any]]) -> str:
    story = Story(USER)
    for entry in entries:
        story.add(entry)
    out = io.StringIO()
    story.told().report(out)
    json.dumps(story.as_json(), default=str)
    lines = out.getvalue().splitlines()  # other writers' control characters escaped: a line each
    assert len(lines) == len(story.entries) + 1 and all(line.isprintable() for line in lines), lines
    return out.getvalue()


@settings(max_examples=120, deadline=None)
@given(st.lists(st.dictionaries(FIELDS, JSON, max_size=6), max_size=4), st.binary(max_size=40))
@example([{"source": [1], "rule": {"a": 1}}, {"source": "x", "rule": [2]}], b"")
@example([], b"[" * 50_000)  # nested past the JSON parser's depth
@example([{"rule": "r\x1b[2J\nforged 200 line", "assetId": "A\u2028\udce9"}], b"")  # printed as it was
def test_any_audit_entry_of_the_user_is_told(entries: list[dict[str, Any]], junk: bytes) -> None:
    records = [
        Record("audit", 0, n, USER.encode(), json.dumps({**e, "userId": USER}).encode(), [], None)
        for n, e in enumerate(entries)
    ]
    records.append(Record("audit", 0, 99, USER.encode(), junk, [], None))  # not JSON: not an entry
    told = [entry for record in records if (entry := _delivered(record, USER)) is not None]
    kinds = [e["outcome"] if isinstance(e.get("outcome"), str) else "delivered" for e in entries]
    assert [entry["kind"] for entry in told] == kinds
    noun = "entry" if len(entries) == 1 else "entries"
    assert tell(told).startswith(f"{USER}: {len(entries)} {noun}\n")


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.none() | st.binary(max_size=30)), max_size=8))
def test_any_dead_letter_headers_are_told(headers: list[tuple[str, bytes | None]]) -> None:
    headers = [*headers, ("x-bridge-user-id", USER.encode())]
    entry = _dead_letter(Record("dlq", 0, 1, None, b"", headers, 2**70), USER)
    assert entry is not None and entry["kind"] == "dead_letter"
    assert tell([entry]).startswith(f"{USER}: 1 entry\n")


def test_counts_agree_with_their_nouns() -> None:
    """ "1 commands", "1 entries", "1 customers" were printed."""
    from bridge.ops.plural import counted

    assert [counted(1, "command"), counted(2, "command"), counted(0, "customer")] == [
        "1 command",
        "2 commands",
        "0 customers",
    ]
    assert [counted(1, "entry", "entries"), counted(3, "entry", "entries")] == ["1 entry", "3 entries"]
