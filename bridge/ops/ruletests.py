"""``intilery-bridge test``: golden cases for the rules, run offline.

A test file (YAML) holds cases: an event (with optional Kafka metadata) and the
commands the rules must make of it, in order and exactly as ``map`` prints them,
or the error they must raise. Nothing touches Kafka or Intilery, and no secret
is needed. See README "Testing rules".
"""

from __future__ import annotations

import glob
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.config import SourceConfig, StrictLoader, describe_validation, read_raw
from bridge.decode.avro import load_schema, read_json
from bridge.decode.decoder import decode_json, resolve_path
from bridge.errors import ConfigError, RecordError
from bridge.model import Command, Record
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
    action: str | None = None
    """``track``, ``identify`` or ``batch``; not compared when left out."""
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
    expect: list[ExpectedCommand] | None = None
    expect_error: ExpectedError | None = None

    @model_validator(mode="after")
    def _one_expectation(self) -> Case:
        if (self.expect is None) == (self.expect_error is None):
            raise ValueError("give either expect (a list of commands, maybe empty) or expect_error")
        return self


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


@dataclass
class Result:
    path: str
    case: str
    problems: list[str]  # empty: passed
    rules: set[str]  # the rules that made a command or raised the error
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.problems


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
    patterns: Iterable[str], source: SourceConfig, mapper: Mapper, config_path: str
) -> list[Suite]:
    """Every test file read and checked against the configuration; ConfigError listing
    every problem (each naming the file, the case and the field) if any."""
    files, problems = expand(patterns)
    suites = []
    for path in files:
        try:
            suites.append(_load_suite(path, source, mapper, config_path))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return suites


def _load_suite(path: str, source: SourceConfig, mapper: Mapper, config_path: str) -> Suite:
    raw = read_raw(path, _TestLoader)
    try:
        cases = TestFile.model_validate(raw).tests
    except ValidationError as exc:
        raise ConfigError([f"{path}: {line}" for line in describe_validation(exc, raw)]) from exc
    topics = {t.name: t for t in source.resolved()}
    rules = set(mapper.names)
    suite, problems, names = Suite(path, cases), [], set()
    for index, case in enumerate(cases):
        where = f"{path}: tests[{index}] ({case.name})"
        if case.name in names:
            problems.append(f"{where}.name: another case has this name")
        names.add(case.name)
        topic = case.topic or source.topic_names[0]
        if topic not in topics:
            problems.append(f"{where}.topic: {topic} is not in source.topics ({', '.join(topics)})")
            continue
        named = [(f"expect[{i}].rule", e.rule) for i, e in enumerate(case.expect or [])]
        if case.expect_error is not None and case.expect_error.rule is not None:
            named.append(("expect_error.rule", case.expect_error.rule))
        problems += [
            f"{where}.{at}: no rule named {name!r} in {config_path}"
            for at, name in named
            if name not in rules
        ]
        try:
            suite.events[case.name] = _decoder(
                case, topics[topic].format, topics[topic].schema_path, path, config_path
            )
        except ValueError as exc:
            problems.append(f"{where}.{exc}")
    if problems:
        raise ConfigError(problems)
    return suite


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


def run_case(suite: Suite, case: Case, mapper: Mapper, default_topic: str) -> Result:
    started = time.perf_counter()
    kafka = case.kafka
    record = Record(  # the `_kafka` root exactly as the bridge builds it from a record
        topic=case.topic or default_topic,
        partition=kafka.partition,
        offset=kafka.offset,
        key=kafka.key.encode() if kafka.key is not None else None,
        value=None,
        headers=[(name, value.encode()) for name, value in kafka.headers.items()],
        timestamp_ms=kafka.timestamp if kafka.timestamp is not None else int(time.time() * 1000),
    )
    meta = record.meta()
    commands: list[Command] = []
    error: RecordError | None = None
    try:
        commands = mapper.map(suite.events[case.name](), meta)
    except RecordError as exc:
        error = exc
    rules = {c.rule for c in commands} | ({error.rule} if error is not None and error.rule else set())
    problems = _compare_error(case, commands, error) if case.expect_error else _compare(case, commands, error)
    return Result(suite.path, case.name, problems, rules, time.perf_counter() - started)


def _described(error: RecordError) -> str:
    rule = f" rule {error.rule}:" if error.rule else ""
    return f"{error.error_class}:{rule} {error.reason}"


def _compare(case: Case, commands: list[Command], error: RecordError | None) -> list[str]:
    expected = case.expect or []
    if error is not None:
        return [f"expected {len(expected)} command(s), the event failed: {_described(error)}"]
    problems = []
    if [e.rule for e in expected] != [c.rule for c in commands]:
        problems.append(
            f"expected commands of rules {[e.rule for e in expected]}, got {[c.rule for c in commands]}"
        )
    for number, (want, got) in enumerate(zip(expected, commands, strict=False), start=1):
        where = f"command {number} (rule {got.rule})"
        if want.rule != got.rule:
            continue  # named above
        if want.action is not None and want.action != got.action:
            problems.append(f"{where}: action: expected {want.action!r}, got {got.action!r}")
        problems += [f"{where}: {line}" for line in diff(want.body, got.body, "body", case.match == "subset")]
    return problems


def _compare_error(case: Case, commands: list[Command], error: RecordError | None) -> list[str]:
    want = case.expect_error
    assert want is not None
    if error is None:
        return [
            f"expected a {want.error_class} error, "
            f"got {len(commands)} command(s) of rules {[c.rule for c in commands]}"
        ]
    problems = []
    if error.error_class != want.error_class:
        problems.append(f"class: expected {want.error_class}, got {error.error_class} ({error.reason})")
    if want.rule is not None and error.rule != want.rule:
        problems.append(f"rule: expected {want.rule}, got {error.rule} ({error.reason})")
    if want.reason_contains is not None and want.reason_contains not in error.reason:
        problems.append(f"reason: expected it to contain {want.reason_contains!r}, got {error.reason!r}")
    return problems


def diff(want: Any, got: Any, path: str, subset: bool) -> list[str]:
    """Where ``got`` differs from ``want``: one line per field path, both values. With
    ``subset`` a mapping may hold keys ``want`` does not name. Numbers compare by value
    (``10`` equals ``10.0``), but a boolean is never a number."""
    if isinstance(want, dict) and isinstance(got, dict):
        lines = []
        for key, value in want.items():
            if key not in got:
                lines.append(f"{path}.{key}: expected {_shown(value)}, missing")
            else:
                lines += diff(value, got[key], f"{path}.{key}", subset)
        if not subset:
            lines += [f"{path}.{key}: not expected, got {_shown(got[key])}" for key in got if key not in want]
        return lines
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [
            line
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for line in diff(w, g, f"{path}[{i}]", subset)
        ]
    return [] if _same(want, got) else [f"{path}: expected {_shown(want)}, got {_shown(got)}"]


def _same(want: Any, got: Any) -> bool:
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool):
        return not isinstance(got, bool) and want == got
    return type(want) is type(got) and want == got


def _shown(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(suites: list[Suite], mapper: Mapper, default_topic: str) -> list[Result]:
    return [run_case(suite, case, mapper, default_topic) for suite in suites for case in suite.cases]


def report(results: list[Result], out: Any) -> None:
    """One line per case; under a failure, what differs."""
    for result in results:
        out.write(f"{'PASS' if result.passed else 'FAIL'}  {result.path}: {result.case}\n")
        for problem in result.problems:
            out.write(f"      {problem}\n")
    failed = sum(not r.passed for r in results)
    out.write(f"test: {len(results)} cases, {len(results) - failed} passed, {failed} failed\n")


def junit_xml(results: list[Result], problems: list[str] | None = None) -> bytes:
    """A JUnit report: a suite per file, a test case per case; ``problems``: files that
    could not be read, each an error."""
    top = ET.Element("testsuites", name="intilery-bridge test")
    by_file: dict[str, list[Result]] = {}
    for result in results:
        by_file.setdefault(result.path, []).append(result)
    for path, cases in by_file.items():
        suite = ET.SubElement(
            top,
            "testsuite",
            name=path,
            tests=str(len(cases)),
            failures=str(sum(not r.passed for r in cases)),
            errors="0",
            time=f"{sum(r.seconds for r in cases):.4f}",
        )
        for result in cases:
            case = ET.SubElement(
                suite, "testcase", classname=path, name=result.case, time=f"{result.seconds:.4f}"
            )
            if result.problems:
                failure = ET.SubElement(case, "failure", message=result.problems[0])
                failure.text = "\n".join(result.problems)
    if problems:
        suite = ET.SubElement(
            top,
            "testsuite",
            name="test files",
            tests=str(len(problems)),
            failures="0",
            errors=str(len(problems)),
        )
        for problem in problems:
            case = ET.SubElement(suite, "testcase", classname="test files", name=problem.split(": ")[0])
            ET.SubElement(case, "error", message=problem).text = problem
    top.set("tests", str(sum(int(s.get("tests", "0")) for s in top)))
    top.set("failures", str(sum(not r.passed for r in results)))
    top.set("errors", str(len(problems or [])))
    return bytes(ET.tostring(top, encoding="utf-8", xml_declaration=True))


def untested_rules(results: list[Result], mapper: Mapper) -> list[str]:
    """The rules no case made a command of (or failed in), in rule order."""
    exercised = set().union(*(r.rules for r in results)) if results else set()
    return [name for name in mapper.names if name not in exercised]
