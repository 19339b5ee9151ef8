"""Shadow rules (``run --shadow CANDIDATE``): a candidate's rules beside the live ones.

Each record the live rules map is mapped by the candidate too, from the same decoded
event; nothing is sent for the candidate. Its commands are matched with the live ones
(:mod:`bridge.rules.difference`) and counted in
``intilery_bridge_shadow_commands_total{rule, difference}``; a difference is logged as
``shadow_difference`` with ids and field paths only, at most one line per rule per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog

from bridge.convert import commands_of
from bridge.metrics import Metrics
from bridge.model import Command, Record
from bridge.rules.difference import Mapped, compared, difference, field_paths, mapped, matched
from bridge.rules.mapping import Alike, Mapper

log = structlog.get_logger("bridge")

LOG_EVERY_S = 1.0  # per rule


class Shadow:
    def __init__(self, mapper: Mapper, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.mapper = mapper
        self._counts = metrics.rules.shadow_commands.counts
        self._clock = clock
        self._logged: dict[str, float] = {}
        self._alike: tuple[Mapper | None, Alike] = (None, Alike())

    def use_rules(self, mapper: Mapper) -> None:
        """A reload's candidate: the records read from now on are shadowed by it."""
        self.mapper, self._alike = mapper, (None, Alike())

    def _known(self, live: Mapper, commands: list[Command]) -> dict[str, Command | None]:
        """What the live ``commands`` tell of the candidate's (:class:`Alike`): its rules
        defined as the live ones, or made none by the same condition, are not run again."""
        if self._alike[0] is not live:
            self._alike = (live, self.mapper.alike(live))
        return self._alike[1].known(commands)

    def compare(
        self, record: Record, live: Mapped, event: dict[str, Any], meta: dict[str, Any], live_rules: Mapper
    ) -> None:
        """The candidate's commands for ``event`` (which ``live_rules`` decoded and mapped to
        ``live``), matched with the live ones and counted; never raises for the record.
        What the live commands tell of the candidate's is not mapped again (:meth:`_known`)."""
        known = self._known(live_rules, live) if isinstance(live, list) else None
        candidate = mapped(commands_of, self.mapper, meta, lambda: event, known)
        for rule, old, new in matched(live, candidate):
            kind = difference(old, new)
            self._counts[rule, kind] += 1
            if kind != "unchanged" and self._due(rule):
                self._log(record, rule, old, new)

    def _due(self, rule: str) -> bool:
        """At most one line per rule per second."""
        now = self._clock()
        if now - self._logged.get(rule, -math.inf) < LOG_EVERY_S:
            return False
        self._logged[rule] = now
        return True

    def _log(self, record: Record, rule: str, old: Command | None, new: Command | None) -> None:
        kind, lines = compared(old, new)
        command = new if new is not None else old
        log.info(
            "shadow_difference",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            rule=rule,
            difference=kind,
            userId=command.body.get("userId") if command is not None else None,
            fields=field_paths(lines) if kind == "changed" else [],
            shadow_rules_version=self.mapper.version,
        )
