"""The sinks of the bridge's own topics (the dead-letter topic, the audit topic), as one:
polled together, waited for together before a hand-over's commit, refusing or fatal by
name."""

from __future__ import annotations

from bridge.runtime.ports import OwnTopicSink


class OwnTopicSinks:
    """Those of the bridge's own topics configured (None: a topic not set)."""

    def __init__(self, *sinks: OwnTopicSink | None) -> None:
        self.sinks = [sink for sink in sinks if sink is not None]

    @property
    def pending(self) -> bool:
        return any(writer.pending for writer in self.sinks)

    @property
    def fatal(self) -> str | None:
        return next((writer.fatal for writer in self.sinks if writer.fatal), None)

    def poll(self) -> None:
        for writer in self.sinks:
            writer.poll()

    def flush(self, timeout: float) -> None:
        for writer in self.sinks:
            writer.flush(timeout)

    def refusals(self, now: float, after_s: float) -> list[str]:
        """Readiness: each topic that has refused writes for over ``after_s``."""
        reasons = []
        for writer in self.sinks:
            if writer.failing_since is not None and (seconds := now - writer.failing_since) > after_s:
                reasons.append(f"{writer.what} has refused writes for {seconds:.0f}s: {writer.last_failure}")
        return reasons
