"""The compiled fast path gives exactly what jmespath gives, on generated events."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rules.expressions import compile_expression

EXPRESSIONS = [
    "a",
    "a.b",
    "a.b.c",
    "@",
    "`1`",
    "'x'",
    "`null`",
    "a == b",
    "a != b",
    "a == `0`",
    "a == `false`",
    "a == `1`",
    "a == `true`",
    "a == 'x'",
    "a.b == `[1]`",
    "a < b",
    "a <= `1`",
    "a > `0.5`",
    "a >= 'm'",
    "a.b > a.c",
    "a && b",
    "a || b",
    "!a",
    "!a.b",
    "a && !b || c",
    "(a || b) && c",
    "a == `0` || a == `1`",
    "type == 'booking_abandoned' && channel == 'sms'",
    "booking.value > `1000`",
    "to_number(a)",
    "length(a)",
    "a[0]",
    "a[*].b",  # not compiled: jmespath's interpreter
]
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 0.0, 1.0, 0.5, -1]),
    st.sampled_from(["", "x", "m", "sms", "booking_abandoned"]),
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.dictionaries(st.sampled_from(["a", "b", "c", "type", "channel", "booking"]), values, max_size=6)


def outcome(run: Any) -> str:
    try:
        return json.dumps(run(), sort_keys=True)  # tells true from 1 and 1.0 from 1 apart
    except Exception as exc:
        return type(exc).__name__


@settings(max_examples=300)
@given(event=events, expression=st.sampled_from(EXPRESSIONS))
def test_same_result_as_jmespath(event: dict[str, Any], expression: str) -> None:
    fast = compile_expression(expression)
    assert outcome(lambda: fast(event)) == outcome(lambda: jmespath.search(expression, event))


@pytest.mark.parametrize("expression", ["a ==", "a[", "'unclosed"])
def test_bad_syntax_raises_like_jmespath(expression: str) -> None:
    with pytest.raises(jmespath.exceptions.ParseError):
        compile_expression(expression)
