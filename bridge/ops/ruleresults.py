"""Running the rules' test cases (:mod:`bridge.ops.ruletests`) and reporting: one line
per case, the differences under a failure, JUnit XML for CI, and the rules no case
exercises."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridge.config import BridgeConfig, CapConfig
from bridge.convert import commands_of, preview
from bridge.errors import RecordError
from bridge.model import Command, Once, Record
from bridge.ops.mapfile import notes
from bridge.ops.plural import counted
from bridge.ops.ruletests import Case, Suite, load_suites
from bridge.rules.difference import field_diff
from bridge.rules.mapping import Mapper


@dataclass
class Result:
    path: str
    case: str
    problems: list[str]  # empty: passed
    rules: set[str]  # the rules that made a command or raised the error
    seconds: float
    notes: list[str] = field(default_factory=list)  # what run would skip, what templates missed
    supplied: set[tuple[str, str]] = field(default_factory=set)  # (rule, template path) found

    @property
    def passed(self) -> bool:
        return not self.problems


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
        commands = commands_of(mapper, meta, suite.events[case.name])
    except RecordError as exc:
        error = exc
    rules = {c.rule for c in commands} | ({error.rule} if error is not None and error.rule else set())
    shown = preview(commands, case.now_ms)  # what run would send of them
    sent, held = _past_the_state(case, suite.caps, shown.sent)
    problems = _compare_error(case, sent, error) if case.expect_error else _compare(case, sent, error)
    result = Result(suite.path, case.name, problems, rules, time.perf_counter() - started)
    result.notes = notes(shown) + held
    paths = mapper.template_paths()
    result.supplied = {(c.rule, p) for c in commands for p in paths.get(c.rule, ()) if p not in c.missing}
    return result


def _past_the_state(
    case: Case, caps: list[CapConfig], commands: list[Command]
) -> tuple[list[Command], list[str]]:
    """The commands ``run`` would send in the state the case assumes (``seen``,
    ``sent_in_window``), in order, each one sent counting in the caps for the next; and
    a note for each it would not: a copy, or over a cap."""
    seen = {
        Once.of(c.rule, str(c.body.get("userId", "")), key, 0).key
        for c in commands
        for key in case.seen.get(c.rule, [])
    }
    counted = Counter(case.sent_in_window)
    sent, held = [], []
    for command in commands:
        if command.once is not None and command.once.key in seen:
            held.append(f"rule {command.rule}: not sent, deduplicated: its dedupe key is in seen")
            continue
        applying = [] if command.uncapped else [cap for cap in caps if command.name in cap.commands]
        if full := next((cap for cap in applying if counted[cap.name] >= cap.max), None):
            held.append(f"rule {command.rule}: not sent, capped: over the cap {full.name} ({full.max})")
            continue
        counted.update(cap.name for cap in applying)
        sent.append(command)
    return sent, held


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
        problems += [
            f"{where}: {line}" for line in field_diff(want.body, got.body, "body", case.match == "subset")
        ]
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


def run(suites: list[Suite], mapper: Mapper, default_topic: str) -> list[Result]:
    return [run_case(suite, case, mapper, default_topic) for suite in suites for case in suite.cases]


def report(results: list[Result], out: Any) -> None:
    """One line per case; under a failure, what differs."""
    for result in results:
        out.write(f"{'PASS' if result.passed else 'FAIL'}  {result.path}: {result.case}\n")
        for problem in result.problems:
            out.write(f"      {problem}\n")
        for note in result.notes:
            out.write(f"      note: {note}\n")
    failed = sum(not r.passed for r in results)
    out.write(f"test: {counted(len(results), 'case')}, {len(results) - failed} passed, {failed} failed\n")


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


def unsupplied_paths(results: list[Result], mapper: Mapper) -> list[str]:
    """Of the rules the cases exercise, each template path no case's event had (the
    templates a misspelt field would leave empty, untested), in rule order."""
    exercised = set().union(*(r.rules for r in results)) if results else set()
    supplied = set().union(*(r.supplied for r in results)) if results else set()
    return [
        f"rule {rule}: no test case supplies {{{{ {path} }}}}"
        for rule, paths in mapper.template_paths().items()
        if rule in exercised
        for path in paths
        if (rule, path) not in supplied
    ]


def failures(results: list[Result]) -> list[str]:
    """Every problem of the failing cases, one line each: ``FILE: CASE: problem``."""
    return [f"{result.path}: {result.case}: {problem}" for result in results for problem in result.problems]


@dataclass(frozen=True)
class Checked:
    """What ``check --tests`` says of the rules' own test cases."""

    failures: list[str]  # each case's problems: the rules fail their own tests
    untested: list[str]  # rules no case exercises
    summary: str  # "N test cases exercise M of them"
    unsupplied: list[str]  # template paths of exercised rules that no case's event has


def check_suites(patterns: list[str], config: BridgeConfig, mapper: Mapper, path: str) -> Checked:
    """Run the cases of ``patterns`` against ``mapper``, as ``check --tests`` does."""
    suites = load_suites(patterns, config.source, mapper, path, config.delivery.caps)
    results = run(suites, mapper, config.source.topic_names[0])
    untested = untested_rules(results, mapper)
    exercise = "exercises" if len(results) == 1 else "exercise"
    summary = f"{counted(len(results), 'test case')} {exercise} {len(mapper) - len(untested)} of them"
    return Checked(failures(results), untested, summary, unsupplied_paths(results, mapper))
