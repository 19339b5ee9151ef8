"""The bridge's own writes to Kafka on their way (dead letters, audit entries), as one:
polled together, waited for together before a hand-over's commit, refusing or fatal by
name."""

from __future__ import annotations

from bridge.runtime.ports import KafkaWrites


class Writes:
    def __init__(self, *writers: KafkaWrites | None) -> None:
        self.writers = [writer for writer in writers if writer is not None]

    @property
    def pending(self) -> bool:
        return any(writer.pending for writer in self.writers)

    @property
    def fatal(self) -> str | None:
        return next((writer.fatal for writer in self.writers if writer.fatal), None)

    def poll(self) -> None:
        for writer in self.writers:
            writer.poll()

    def flush(self, timeout: float) -> None:
        for writer in self.writers:
            writer.flush(timeout)

    def refusals(self, now: float, after_s: float) -> list[str]:
        """Readiness: each topic that has refused writes for over ``after_s``."""
        reasons = []
        for writer in self.writers:
            if writer.failing_since is not None and (seconds := now - writer.failing_since) > after_s:
                reasons.append(f"{writer.what} has refused writes for {seconds:.0f}s: {writer.last_failure}")
        return reasons
