"""Property-based fuzzing of what comes from outside: record bytes, events and
configuration files. Whatever arrives, the bridge answers with its own error
(DecodeError, MappingError, ConfigError naming file, rule and field), never a
traceback."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import SourceConfig
from bridge.decode.decoder import Decoder
from bridge.errors import ConfigError, DecodeError, MappingError
from bridge.ops.loading import load
from bridge.rules.mapping import compile_rules
from tests.support import base_config

SCHEMA = Path(__file__).parent.parent.parent / "schemas" / "booking_abandoned.avsc"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Events shaped like the ones the rules read, with any value in any place.
field = st.sampled_from(["type", "channel", "customer", "booking", "occurredAt", "seq", "traits", "id"])
events = st.recursive(
    st.dictionaries(field, json_values, max_size=6),
    lambda inner: st.dictionaries(field, inner | json_values, max_size=6),
    max_leaves=12,
)
event_types = st.sampled_from(
    ["booking_abandoned", "customer_registered", "letter", "app_reminder", "booking_viewed", 7, None]
)


class FakeCluster:
    """What ``base_config`` reads of a cluster; nothing connects to it."""

    bootstrap_servers = "localhost:9092"
    topic, dlq = "bookings", "bookings.dlq"


def mapper() -> Any:
    raw = base_config(FakeCluster(), "http://localhost:1", "fuzz")  # type: ignore[arg-type]
    compiled, problems = compile_rules(raw["rules"], ["bookings"])
    assert problems == []
    return compiled


MAPPER = mapper()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, kind=event_types, channel=st.sampled_from(["sms", "email", None, 3]))
def test_any_event_maps_or_raises_the_mapping_error(event: dict[str, Any], kind: Any, channel: Any) -> None:
    event = {**event, "type": kind, "channel": channel}
    meta = {"topic": "bookings", "partition": 0, "offset": 1, "key": None, "timestamp": 1, "headers": {}}
    try:
        commands = MAPPER.map(event, meta)
    except MappingError as exc:
        assert exc.rule and exc.reason
        return
    for command in commands:
        assert json.loads(command.payload) == command.body


def json_like_bytes() -> st.SearchStrategy[bytes]:
    """Valid JSON, then cut, spliced or flipped: closer to real damage than random bytes."""
    texts = json_values.map(lambda v: json.dumps(v).encode())

    def damage(data: bytes, cut: int, byte: int, where: int) -> bytes:
        if not data:
            return bytes([byte])
        where %= len(data)
        return (data[:where] + bytes([byte]) + data[where + 1 :])[: max(1, cut)]

    return texts | st.builds(damage, texts, st.integers(0, 200), st.integers(0, 255), st.integers(0, 10**6))


DECODER = Decoder(
    SourceConfig.model_validate(
        {"topics": ["bookings", {"name": "avro", "format": "avro", "schema": str(SCHEMA)}]}
    ),
    "bridge.yaml",
)


@settings(max_examples=300)
@given(
    value=json_like_bytes() | st.binary(max_size=300) | st.none(), topic=st.sampled_from(["bookings", "avro"])
)
def test_any_bytes_decode_or_raise_the_decode_error(value: bytes | None, topic: str) -> None:
    try:
        event = DECODER.decode(topic, value)
    except DecodeError as exc:
        assert exc.reason
        return
    assert isinstance(event, dict)


# --- configuration files -----------------------------------------------------------

GOOD = base_config(FakeCluster(), "http://localhost:1", "fuzz")  # type: ignore[arg-type]
GOOD["intilery"]["auth_token"] = "fuzz-token"

junk = st.one_of(
    st.none(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["((", "{{ a.[ }}", "{{", "send_fax", "a == ", "${NOT_SET}", "-1", "1h30x", "http//x"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["x", "name", "emit", "url"]), st.integers(), max_size=2),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the configuration a value sits."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


PATHS = paths(GOOD)


def mutate(config: dict[str, Any], path: tuple[Any, ...], value: Any, as_key: bool) -> dict[str, Any]:
    config = copy.deepcopy(config)
    parent = config
    for step in path[:-1]:
        parent = parent[step]
    if as_key and isinstance(parent, dict):
        parent[f"unknown_{path[-1]}"] = value  # an unknown key beside a known one
    else:
        parent[path[-1]] = value
    return config


@settings(max_examples=100, deadline=None)
@given(path=st.sampled_from(PATHS), value=junk, as_key=st.booleans())
def test_a_broken_config_is_refused_naming_file_rule_and_field(
    path: tuple[Any, ...], value: Any, as_key: bool
) -> None:
    broken = mutate(GOOD, path, value, as_key)
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "bridge.yaml"
        file.write_text(yaml.safe_dump(broken))
        try:
            load(str(file))
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.startswith(f"{file}: "), problem
                if path[0] == "rules" and len(path) > 2 and path[2] != "name":
                    # A rule that still has its name is named beside its index.
                    name = broken["rules"][path[1]]["name"]
                    where = f"rules[{path[1]}]"
                    if where in problem:
                        assert f"{where} ({name})" in problem, problem
            return
    # Accepted: the junk happened to be a valid value (a number where a number goes).


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200) | json_like_bytes().map(lambda b: b.decode("latin-1")))
def test_any_file_content_is_refused_with_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "bridge.yaml"
        file.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load(str(file))
        assert all(problem.startswith(f"{file}: ") for problem in info.value.problems)
