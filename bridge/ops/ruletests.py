"""``intilery-bridge test``: golden cases for the rules, run offline: the file format and its loading
(running and reporting: :mod:`bridge.ops.ruleresults`).

A test file (YAML) holds cases: an event (with optional Kafka metadata) and the
commands the rules must make of it, in order and exactly as ``map`` prints them,
or the error they must raise. Nothing touches Kafka or Intilery, and no secret
is needed. See docs/rules.md, "Testing rules".
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bridge import timestamps
from bridge.config import (
    CapConfig,
    SourceConfig,
    StrictLoader,
    as_dict,
    as_list,
    describe_validation,
    read_raw,
)
from bridge.decode.avro import load_schema, read_json
from bridge.decode.decoder import decode_json, resolve_path
from bridge.errors import ConfigError
from bridge.rules.mapping import Mapper

ErrorClass = Literal["decode", "mapping"]


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KafkaMeta(_Case):
    """The record's Kafka metadata, the ``_kafka`` root the rules see."""

    key: str | None = None
    timestamp: int | None = Field(default=None, ge=0)
    """Milliseconds since the epoch; default the time of the run (as ``map``)."""
    headers: dict[str, str] = {}
    partition: int = Field(default=0, ge=0)
    offset: int = Field(default=0, ge=0)


class ExpectedCommand(_Case):
    rule: str = Field(min_length=1)
    action: Literal["track", "identify"] | None = None
    """``track`` or ``identify`` (a batch is how requests travel, not a rule's action); not
    compared when left out."""
    body: dict[str, Any]


class ExpectedError(_Case):
    error_class: ErrorClass = Field(alias="class")
    rule: str | None = None
    reason_contains: str | None = None


class Case(_Case):
    name: str = Field(min_length=1)
    topic: str | None = None
    """Default: the first of ``source.topics``."""
    kafka: KafkaMeta = KafkaMeta()
    event: Any
    schema_path: str | None = Field(default=None, alias="schema")
    """For an Avro topic without a local schema: the ``.avsc`` (relative to the test file)."""
    match: Literal["exact", "subset"] = "exact"
    """``subset``: a body may hold fields the case does not name."""
    now: str | int | None = None
    """When the case runs: an ISO-8601 time or epoch milliseconds; rules' ``max_age`` is
    measured from it (default ``kafka.timestamp``; with neither, ``max_age`` is not
    applied), and a command ``run`` would skip then is not among those the case expects."""
    seen: dict[str, list[str]] = {}
    """The customer-safety state the case assumes ([Customer safety](safety.md)): by rule
    (one with a ``dedupe``), the rendered dedupe keys already accepted within its window for
    the customer of the event's commands; such a command is a copy, not among those the
    case expects."""
    sent_in_window: dict[str, Annotated[int, Field(ge=0)]] = {}
    """By cap (``delivery.caps[].name``), how many commands it counted for the customer
    within its window; a command past the cap is not among those the case expects."""
    expect: list[ExpectedCommand] | None = None
    expect_error: ExpectedError | None = None

    @property
    def now_ms(self) -> int | None:
        """The case's moment (validated with the case), or None."""
        if self.now is None:
            return self.kafka.timestamp
        return timestamps.normalise_ms(self.now)[1]

    @model_validator(mode="after")
    def _one_expectation(self) -> Case:
        if (self.expect is None) == (self.expect_error is None):
            raise ValueError("give either expect (a list of commands, maybe empty) or expect_error")
        return self

    @field_validator("now")
    @classmethod
    def _a_time(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            timestamps.normalise_ms(value)  # its ValueError names what is wrong
        return value


class TestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False  # not a pytest class

    tests: list[Case] = Field(min_length=1)


class _TestLoader(StrictLoader):
    """Times stay text: ``timestamp: 2019-11-18T13:30:12.984Z`` is what the body holds."""


_TestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in StrictLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Suite:
    """The cases of one file, ready to run."""

    path: str
    cases: list[Case]
    events: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)  # by case name
    caps: list[CapConfig] = field(default_factory=list)  # delivery.caps, for sent_in_window


def expand(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """Files and globs (``examples/tests/*.yaml``, ``**`` too) → the files, the problems."""
    files, problems = [], []
    for pattern in patterns:
        if Path(pattern).is_file():
            files.append(pattern)
        elif matched := sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file()):
            files += matched
        else:
            problems.append(f"{pattern}: no such file")
    return files, problems


def load_suites(
    patterns: Iterable[str],
    source: SourceConfig,
    mapper: Mapper,
    config_path: str,
    caps: list[CapConfig],
) -> list[Suite]:
    """Every test file read and checked against the configuration (``caps``: its
    ``delivery.caps``); ConfigError listing every problem (each naming the file, the case
    and the field) if any."""
    files, problems = expand(patterns)
    suites = []
    for path in files:
        try:
            suites.append(_load_suite(path, source, mapper, config_path, caps))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return suites


def _load_suite(
    path: str, source: SourceConfig, mapper: Mapper, config_path: str, caps: list[CapConfig]
) -> Suite:
    raw = read_raw(path, _TestLoader)
    try:
        cases = TestFile.model_validate(raw).tests
    except ValidationError as exc:
        # What the cases name is checked too, so that a misspelt key hides no other problem.
        problems = [f"{path}: {line}" for line in describe_validation(exc, raw, TestFile)]
        named = [_named(case) for case in as_list(raw.get("tests")) if isinstance(case, dict)]
        raise ConfigError(problems + _naming_problems(path, named, source, mapper, config_path)) from exc
    topics = {t.name: t for t in source.resolved()}
    suite = Suite(path, cases, caps=caps)
    problems = _naming_problems(path, [_named(case) for case in cases], source, mapper, config_path)
    problems += _state_problems(path, cases, mapper, caps, config_path)
    for index, case in enumerate(cases):
        topic = case.topic or source.topic_names[0]
        if topic not in topics:
            continue  # named above
        try:
            suite.events[case.name] = _decoder(
                case, topics[topic].format, topics[topic].schema_path, path, config_path
            )
        except ValueError as exc:
            problems.append(f"{path}: tests[{index}] ({case.name}).{exc}")
    if problems:
        raise ConfigError(problems)
    return suite


Named = tuple[Any, Any, list[tuple[str, Any]]]  # a case's name, topic and the rules it names


def _named(case: Case | dict[str, Any]) -> Named:
    """What a case names, validated or not."""
    if isinstance(case, Case):
        expected = [(f"expect[{i}].rule", e.rule) for i, e in enumerate(case.expect or [])]
        if case.expect_error is not None and case.expect_error.rule is not None:
            expected.append(("expect_error.rule", case.expect_error.rule))
        return case.name, case.topic, expected
    listed: list[tuple[str, Any]] = [
        (f"expect[{i}].rule", as_dict(e).get("rule")) for i, e in enumerate(as_list(case.get("expect")))
    ]
    if (rule := as_dict(case.get("expect_error")).get("rule")) is not None:
        listed.append(("expect_error.rule", rule))
    return case.get("name"), case.get("topic"), listed


def _naming_problems(
    path: str, cases: list[Named], source: SourceConfig, mapper: Mapper, config_path: str
) -> list[str]:
    """Each case's name used twice, topic the configuration does not read, rule it does not have."""
    topics = source.topic_names
    rules = set(mapper.names)
    problems: list[str] = []
    names: set[Any] = set()
    for index, (name, topic, named) in enumerate(cases):
        where = f"{path}: tests[{index}] ({name})"
        if name in names:
            problems.append(f"{where}.name: another case has this name")
        names.add(name)
        topic = topic or topics[0]
        if topic not in topics:
            problems.append(f"{where}.topic: {topic} is not in source.topics ({', '.join(topics)})")
            continue
        problems += [
            f"{where}.{at}: no rule named {rule!r} in {config_path}"
            for at, rule in named
            if rule not in rules
        ]
    return problems


def _state_problems(
    path: str, cases: list[Case], mapper: Mapper, caps: list[CapConfig], config_path: str
) -> list[str]:
    """Each ``seen`` naming a rule without a ``dedupe``, each ``sent_in_window`` a cap the
    configuration does not have."""
    deduplicating = set(mapper.deduplicating)
    cap_names = {cap.name for cap in caps}
    problems = []
    for index, case in enumerate(cases):
        where = f"{path}: tests[{index}] ({case.name})"
        problems += [
            f"{where}.seen.{rule}: no rule named {rule!r} with a dedupe in {config_path}"
            for rule in case.seen
            if rule not in deduplicating
        ]
        problems += [
            f"{where}.sent_in_window.{name}: no cap named {name!r} in {config_path} (delivery.caps)"
            for name in case.sent_in_window
            if name not in cap_names
        ]
    return problems


def _decoder(
    case: Case, format_: str | None, topic_schema: str | None, path: str, config_path: str
) -> Callable[[], dict[str, Any]]:
    """How the case's event becomes what the rules see: through the bridge's own JSON
    decoder, or the Avro schema's JSON form (as ``map --format avro``)."""
    try:
        line = json.dumps(case.event, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event: not JSON data: {exc}") from exc
    if format_ != "avro":
        return lambda: decode_json(line.encode())
    if case.schema_path is not None:
        schema_file = Path(path).parent / case.schema_path
    elif topic_schema is not None:
        schema_file = resolve_path(topic_schema, config_path)
    else:
        raise ValueError(f"schema: topic {case.topic} takes its schemas from the registry: name an .avsc")
    try:
        schema = load_schema(schema_file)
    except ValueError as exc:
        raise ValueError(f"schema: {exc}") from exc
    return lambda: read_json(line, schema)
