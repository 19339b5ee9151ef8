"""Rules: ``when`` + ``emit`` templates → Intilery commands.

Takes a decoded event and its Kafka metadata, gives the list of
:class:`Command` to post, one per rule whose ``when`` holds, in rule order.
Raises :class:`~bridge.errors.MappingError` (naming the rule) when a rule cannot
be evaluated or renders a body Intilery would refuse; at start-up,
:func:`compile_rules` raises :class:`~bridge.errors.ConfigError` naming the
file, the rule and the field.

Templates (:mod:`bridge.rules.templates`) that yield null name fields the event does
not have; the command names them (``Command.missing``) and the rule's ``on_missing``
decides whether such a command is sent, held back or dead-lettered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from bridge import timestamps
from bridge.config import RuleConfig
from bridge.errors import MappingError, MissingFields
from bridge.model import Command, Once
from bridge.rules.commands import KNOWN_EVENTS, command_problem, is_dynamic, misspelt_command
from bridge.rules.expressions import described, is_false, quoted_field_comparisons
from bridge.rules.templates import MISSING, compile_expr, compile_template, search, template_paths

MAX_CALL_BYTES = 32 * 1024
KAFKA_ROOT = "_kafka"

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)  # built once


class CompiledRule:
    """A rule ready to run: ``rule(context)`` gives a :class:`Command` or None."""

    def __init__(self, config: RuleConfig, where: str, problems: list[str]) -> None:
        self.name = config.name
        self.definition = config.model_dump_json()  # two rules defined alike make the same command
        self.condition = json.dumps([config.topics, config.when])  # and alike here, both or neither
        self.max_age_s = config.max_age
        self.on_missing = config.on_missing
        self.paths = template_paths(config.emit)  # what its templates read of the event
        self.topics = frozenset(config.topics) if config.topics else None
        self._when = compile_expr(config.when, f"{where}.when", problems) if config.when else None
        self._emit = compile_template(config.emit, f"{where}.emit", problems)
        self._dedupe = config.dedupe
        self._uncapped = not config.caps
        self._max_per_minute = config.max_per_minute
        self._dedupe_key = (
            compile_template(config.dedupe.key, f"{where}.dedupe.key", problems) if config.dedupe else None
        )
        problem = command_problem(config.emit, literal=True) or misspelt_command(config.emit.get("event"))
        if problem:
            problems.append(f"{where}.emit.{problem[0]}: {problem[1]}")
        literal_time = config.emit.get("timestamp")
        if literal_time is not None and not is_dynamic(literal_time):
            try:
                timestamps.normalise(literal_time)
            except ValueError as exc:
                problems.append(f"{where}.emit.timestamp: {exc}")

    @property
    def deduplicates(self) -> bool:
        return self._dedupe is not None

    def applies_to(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics

    def __call__(self, context: dict[str, Any]) -> Command | None:
        if self._when is not None and is_false(search(self._when, context)):
            return None
        holes: list[str] = []
        body = self._emit(context, holes)
        missing = tuple(dict.fromkeys(holes))
        if missing and self.on_missing == "dead_letter":
            raise MissingFields(missing, rule=self.name)
        if missing and self.on_missing == "skip":  # never sent: shown, counted, not checked
            return Command(self.name, "track", body, b"", missing=missing, held=True)
        safety = Safety(
            self._once(context, body) if self._dedupe is not None else None,
            self._uncapped,
            self._max_per_minute,
        )
        record_ms = context[KAFKA_ROOT].get("timestamp")
        return finish_command(self.name, body, record_ms, self.max_age_s, missing, safety)

    def _once(self, context: dict[str, Any], body: dict[str, Any]) -> Once:
        """The command's dedupe key: a key that renders empty (a field the event does not
        have) cannot tell copies apart, so the record is dead-lettered rather than guessed."""
        assert self._dedupe is not None and self._dedupe_key is not None
        holes: list[str] = []
        rendered = self._dedupe_key(context, holes)
        if rendered is MISSING or rendered in ("", None):
            named = f" (the event has no {', '.join(holes)})" if holes else ""
            raise MappingError(f"dedupe.key: rendered empty{named}", rule=self.name)
        text = rendered if isinstance(rendered, str) else json.dumps(rendered, sort_keys=True, default=str)
        return Once.of(self.name, str(body.get("userId", "")), text, self._dedupe.window)


@dataclass(frozen=True, slots=True)
class Safety:
    """What a rule's command carries of customer safety: its dedupe key, its caps being
    off, its flood breaker."""

    once: Once | None = None
    uncapped: bool = False
    max_per_minute: int | None = None


UNGUARDED = Safety()


def finish_command(
    rule: str,
    body: dict[str, Any],
    record_ms: int | None,
    max_age_s: float | None = None,
    missing: tuple[str, ...] = (),
    safety: Safety = UNGUARDED,
) -> Command:
    """Normalise the event name and timestamp, check the contract and the size."""
    event = body.get("event")
    if isinstance(event, str) and event.lower() in KNOWN_EVENTS:
        body["event"] = event.lower()
    problem = command_problem(body, literal=False) or misspelt_command(event)
    if problem:
        raise MappingError(f"{problem[0]}: {problem[1]}", rule=rule)
    event_ms = record_ms
    try:
        if "timestamp" in body:
            body["timestamp"], event_ms = timestamps.normalise_ms(body["timestamp"])
        elif record_ms is not None:
            body["timestamp"] = timestamps.from_epoch_ms(record_ms)
    except ValueError as exc:  # its message quotes the value: an event's, so not in a reason
        raise MappingError(
            f"timestamp: not a time, or out of range ({described(body.get('timestamp'))})", rule=rule
        ) from exc
    try:
        payload = _ENCODER.encode(body).encode()
    except (TypeError, ValueError) as exc:
        raise MappingError(f"body is not valid JSON: {exc}", rule=rule) from exc
    if len(payload) > MAX_CALL_BYTES:
        raise MappingError(f"body is {len(payload)} bytes, over Intilery's 32 KB per call", rule=rule)
    action = "identify" if body["event"] == "identify" else "track"
    return Command(
        rule,
        action,
        body,
        payload,
        event_ms,
        max_age_s,
        missing,
        once=safety.once,
        uncapped=safety.uncapped,
        max_per_minute=safety.max_per_minute,
    )


class Mapper:
    """All rules of a configuration; ``map(event, meta)`` gives the commands."""

    def __init__(self, rules: Sequence[CompiledRule], topics: Sequence[str], version: str = "-") -> None:
        self._by_topic = {t: [r for r in rules if r.applies_to(t)] for t in topics}
        self._all = list(rules)
        self.version = version  # the rules as loaded, hashed (:func:`rules_version`)
        self.warnings: list[str] = []  # likely mistakes that are still valid rules

    def __len__(self) -> int:
        return len(self._all)

    @property
    def names(self) -> list[str]:
        """The rules' names, in order."""
        return [rule.name for rule in self._all]

    @property
    def deduplicating(self) -> list[str]:
        """The names of the rules with a ``dedupe``."""
        return [rule.name for rule in self._all if rule.deduplicates]

    def template_paths(self) -> dict[str, list[str]]:
        """By rule name, in rule order, what its templates read of the event."""
        return {rule.name: rule.paths for rule in self._all}

    def rules_for(self, topic: str) -> list[CompiledRule]:
        """The rules of records from ``topic``: those whose ``topics`` list it or that have
        none, also for a topic this set was not compiled for (``diff`` and ``--shadow`` run a
        candidate's rules on the live topics)."""
        found = self._by_topic.get(topic)
        if found is None:
            found = self._by_topic[topic] = [rule for rule in self._all if rule.applies_to(topic)]
        return found

    def map(
        self, event: dict[str, Any], meta: dict[str, Any], known: dict[str, Command | None] | None = None
    ) -> list[Command]:
        """The commands of ``event``. ``known``: by rule name, what rules defined alike in
        another set made of this event (:meth:`alike`); those rules are not run again."""
        context = event  # the decoded event is ours: add the metadata root instead of copying it
        context[KAFKA_ROOT] = meta
        commands = []
        for rule in self.rules_for(meta["topic"]):
            if known is not None and rule.name in known:
                command = known[rule.name]
            else:
                try:
                    command = rule(context)
                except MappingError as exc:
                    if exc.rule:
                        raise
                    raise exc.for_rule(rule.name) from exc
                except RecursionError as exc:
                    raise MappingError("event nested too deeply", rule=rule.name) from exc
            if command is not None:
                commands.append(command)
        return commands

    def alike(self, other: Mapper) -> Alike:
        """This set's rules that are defined as in ``other`` (of an event ``other`` maps, they
        make the same command or none, as there), and those whose topics and ``when`` alone
        are (they make none where it made none)."""
        rules = {(rule.name, rule.definition) for rule in other._all}
        conditions = {(rule.name, rule.condition) for rule in other._all}
        same = frozenset(rule.name for rule in self._all if (rule.name, rule.definition) in rules)
        return Alike(same, frozenset(r.name for r in self._all if (r.name, r.condition) in conditions) - same)


class Alike(NamedTuple):
    rules: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()

    def known(self, commands: list[Command]) -> dict[str, Command | None]:
        """By rule name, the candidate's commands that ``commands`` (the other set's, of the
        same event) tell (see :meth:`Mapper.map`): none where the rule or its condition is
        alike and the other made none; the other's where the rule is alike."""
        known: dict[str, Command | None] = dict.fromkeys(self.rules | self.conditions)
        for command in commands:
            if command.rule in self.rules:
                known[command.rule] = command
            elif command.rule in self.conditions:
                del known[command.rule]  # its condition held: the candidate's own emit runs
        return known


def compile_rules(raw_rules: Any, topics: Sequence[str]) -> tuple[Mapper, list[str]]:
    """Compile every rule that parses; give the Mapper and every problem found.

    Rules that do not parse as a rule at all are left to the configuration's
    own validation, which reports them.
    """
    problems: list[str] = []
    mapper_warnings: list[str] = []
    rules = []
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        try:
            rule = RuleConfig.model_validate(raw)
        except ValidationError as exc:
            # Its own validation reports what it broke; the rest of it is still compiled
            # for its other problems, so that no problem hides another.
            if (rest := _without(raw, exc)) is not None:
                CompiledRule(rest, f"rules[{index}] ({rest.name})", problems)
            continue
        rules.append(CompiledRule(rule, f"rules[{index}] ({rule.name})", problems))
        mapper_warnings += [
            f'rules[{index}] ({rule.name}).when: "{name}" is a field name in JMESPath, not text; '
            f"to compare with the text write '{name}'"
            for name in (quoted_field_comparisons(rule.when) if rule.when else [])
        ]
    mapper = Mapper(rules, topics, rules_version(raw_rules))
    mapper.warnings = mapper_warnings
    return mapper, problems


def _without(raw: Any, exc: ValidationError) -> RuleConfig | None:
    """The rule without the keys its validation refused, if it is a rule then."""
    refused = {error["loc"][0] for error in exc.errors() if error["loc"]}
    if not isinstance(raw, dict) or refused & {"name", "emit"}:
        return None
    try:
        return RuleConfig.model_validate({key: value for key, value in raw.items() if key not in refused})
    except ValidationError:
        return None


def rules_version(raw_rules: Any) -> str:
    """A short stable hash of the rules as loaded (their variables expanded): the same rules
    give the same version, whatever the file's layout, comments or other sections."""
    canonical = json.dumps(raw_rules, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
