"""Reloading a running bridge's rules: on SIGHUP, and with ``run --watch`` when the
file changes (its content is compared every second, so a Kubernetes ConfigMap's
``..data`` symlink swap is seen like any edit).

A reload is validated as ``check`` validates the file (and, with ``run --tests``, the
rule tests' cases must pass); only ``rules`` may differ from the configuration the
bridge runs: any other change needs a restart, and the reload is refused naming each
key. Refused: the old rules go on (``config_reload_failed``). Accepted: the next
record read is mapped by the new rules (``config_reloaded``); commands mapped already
go out as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.config import BridgeConfig, read_expanded, sections_of
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from bridge.ops import ruleresults, ruletests
from bridge.ops.loading import Loaded, load, load_offline
from bridge.rules.mapping import Mapper

log = structlog.get_logger("bridge")

WATCH_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Candidate:
    """``run --shadow``'s candidate: its file, and how to put its rules in force."""

    path: str
    use_rules: Callable[[Mapper], None]


class Reloader:
    """Reloads ``path``'s rules into the running bridge (``use_rules``)."""

    def __init__(
        self,
        path: str,
        config: BridgeConfig,
        use_rules: Callable[[Mapper], None],
        metrics: Metrics,
        *,
        tests: Sequence[str] = (),
        watch: bool = False,
        shadow: Candidate | None = None,
    ) -> None:
        """``shadow``: the candidate (``run --shadow``); it reloads with the rest, all or
        nothing."""
        self._path = path
        self._config = config
        self._use_rules = use_rules
        self._metrics = metrics
        self._tests = list(tests)
        self._watch = watch
        self._shadow = shadow

    async def run(self) -> None:
        """Wait for SIGHUP (and, watching, for the file to change), reload, and again."""
        hup = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, hup.set)
        seen = self._digest()
        while True:
            if self._watch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hup.wait(), WATCH_INTERVAL_S)
            else:
                await hup.wait()
            digest = self._digest()
            if hup.is_set() or digest != seen:
                hup.clear()
                seen = digest
                await self.reload()

    async def reload(self) -> bool:
        """Validate the file and, if only its rules changed, put them in force. Whatever goes
        wrong on the way is a refused reload (the rules in force kept), never the end of the
        reloader: it goes on listening."""
        try:
            return await self._reload()
        except Exception as exc:
            problems = [f"{self._path}: cannot be reloaded: {type(exc).__name__}"]
            log.error("config_reload_failed", problems=problems)
            self._metrics.rules.reloads("failed").inc()
            return False

    async def _reload(self) -> bool:
        problems, loaded = await asyncio.to_thread(self._validated)
        shadow = await asyncio.to_thread(self._shadow_rules, problems) if self._shadow else None
        if loaded is None or problems:
            log.error("config_reload_failed", problems=problems)
            self._metrics.rules.reloads("failed").inc()
            return False
        for warning in loaded.mapper.warnings:
            log.warning("rule_warning", warning=warning)
        self._use_rules(loaded.mapper)
        extra = {}
        if self._shadow is not None and shadow is not None:
            self._shadow.use_rules(shadow)
            extra = {"shadow_rules_version": shadow.version}
        log.info("config_reloaded", rules_version=loaded.mapper.version, rules=len(loaded.mapper), **extra)
        self._metrics.rules.reloads("ok").inc()
        return True

    def _validated(self) -> tuple[list[str], Loaded | None]:
        """The problems ``check`` would print, those a restart would need and failing rule
        tests; or the configuration loaded."""
        try:
            loaded = load(self._path)
        except ConfigError as exc:
            return exc.problems + self._sections_changed(), None
        if loaded.decoder.registry is not None:
            loaded.decoder.registry.close()  # the bridge's own decoder goes on (source cannot change)
        problems = [f"{self._path}: {problem}" for problem in restart_needed(self._config, loaded.config)]
        if not problems and self._tests:
            problems = failing_tests(self._tests, loaded, self._path)
        return problems, None if problems else loaded

    def _sections_changed(self) -> list[str]:
        """What a refused file changes outside ``rules``, read section by section, so both
        are reported at once (none when the file cannot be read, or a variable is unset)."""
        try:
            expanded, unset = read_expanded(self._path)
        except ConfigError:
            return []
        if unset:
            return []
        changed = restart_needed(self._config, sections_of(expanded, self._config))
        return [f"{self._path}: {problem}" for problem in changed]

    def _shadow_rules(self, problems: list[str]) -> Mapper | None:
        """The candidate's rules again, or None with its problems added to ``problems``."""
        assert self._shadow is not None
        try:
            return load_offline(self._shadow.path)[1]
        except ConfigError as exc:
            problems += exc.problems
            return None

    def _digest(self) -> tuple[str | None, ...]:
        """The watched files' contents, hashed: the configuration's and the candidate's."""
        paths = [self._path, self._shadow.path] if self._shadow else [self._path]
        return tuple(file_digest(path) for path in paths)


def restart_needed(running: BridgeConfig, candidate: BridgeConfig) -> list[str]:
    """Each key outside ``rules`` whose value differs: only the rules reload."""
    before, after = flat(running.model_dump(exclude={"rules"})), flat(candidate.model_dump(exclude={"rules"}))
    changed = sorted(
        key for key in before.keys() | after.keys() if before.get(key, ...) != after.get(key, ...)
    )
    return [f"{key}: changed, and only rules reload: restart the bridge for it" for key in changed]


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": leaf}`` (kafka's dotted properties stay whole)."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    found: dict[str, Any] = {}
    for key, item in value.items():
        found |= flat(item, f"{prefix}.{key}" if prefix else str(key))
    return found


def failing_tests(patterns: list[str], loaded: Loaded, path: str) -> list[str]:
    """The rule tests' cases that fail with the candidate's rules, as ``test`` names them
    (``PATH: test failed: FILE: CASE: problem``), or the test files' own problems."""
    try:
        suites = ruletests.load_suites(
            patterns, loaded.config.source, loaded.mapper, path, loaded.config.delivery.caps
        )
    except ConfigError as exc:
        return exc.problems
    results = ruleresults.run(suites, loaded.mapper, loaded.config.source.topic_names[0])
    return [f"{path}: test failed: {line}" for line in ruleresults.failures(results)]


def file_digest(path: str) -> str | None:
    """The file's content, hashed (None: unreadable); a symlink is followed."""
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None
