"""Reading the audit topic back after a crash (:mod:`bridge.kafka.sentlog`): only this
group's entries outside a replay count, and no entry, however written, breaks the reader."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from bridge.kafka.sentlog import SentEarlier, sent_entry


def entry(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "eventId": "E-1",
        "rule": "abandoned-sms",
        "source": {"topic": "bookings", "partition": 2, "offset": 41},
        "group": "bridge",
    }
    return json.dumps(fields | changes).encode()


def test_an_entry_of_the_group_names_its_record_rule_and_event_id() -> None:
    assert sent_entry(entry(), "bridge") == (("bookings", 2), 41, "abandoned-sms", "E-1")
    assert sent_entry(entry(eventId=None), "bridge") == (("bookings", 2), 41, "abandoned-sms", "")


def test_other_groups_replays_and_foreign_entries_are_passed_over() -> None:
    assert sent_entry(entry(), "other-bridge") is None
    assert sent_entry(entry(group=None), "bridge") is None  # before entries named their group
    assert sent_entry(entry(window={"run": "replay"}), "bridge") is None
    assert sent_entry(entry(outcome="delivered"), "bridge") is not None
    assert sent_entry(entry(outcome="stale"), "bridge") is None  # skipped, never sent
    assert sent_entry(entry(source={"topic": "bookings", "partition": True, "offset": 41}), "bridge") is None
    assert sent_entry(entry(source={"topic": "bookings", "partition": 2, "offset": "41"}), "bridge") is None
    assert sent_entry(entry(rule=["abandoned-sms"]), "bridge") is None
    assert sent_entry(b"[" * 100_000, "bridge") is None  # past the parser's depth
    assert sent_entry(b"\xff\xfe", "bridge") is None and sent_entry(None, "bridge") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
@example(
    b'{"group": "bridge", "rule": "r", "source": {"topic": "t", "partition": 0, "offset": 1}, "eventId": {}}'
)
def test_any_bytes_are_an_entry_or_nothing(value: bytes) -> None:
    found = sent_entry(value, "bridge")
    assert found is None or (
        isinstance(found[1], int) and isinstance(found[2], str) and isinstance(found[3], str)
    )


def test_what_is_still_ahead_of_a_commit() -> None:
    sent = SentEarlier(1_000, {4: {"a": "E-4"}, 9: {"b": "E-9"}})
    assert sent.from_offset(4) is sent
    assert sent.from_offset(5) == SentEarlier(1_000, {9: {"b": "E-9"}})
    assert sent.from_offset(10) == SentEarlier(1_000, {})
