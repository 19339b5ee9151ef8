"""Committing: the one object that does the commit job, in numbered steps.

1. **What is committable**: per partition, where a commit points (its first record not
   finished, else one past the last finished), when that or the finished records after
   it changed since the last commit (forced, on revocation and at shutdown: whatever is
   known); nothing in a replay that does not record its progress.
2. **The map**: the finished records after that point, named in the commit's metadata
   (:mod:`bridge.kafka.offsetmap`) within the broker's bound; those it has no room for
   are counted (``intilery_bridge_offset_map_overflow_total``).
3. **The request**: on the Kafka thread (:meth:`KafkaWorker.commit
   <bridge.runtime.worker.KafkaWorker.commit>`), for the partitions still assigned; one
   taken before a rebalance that reaches the consumer after it is dropped (the partition
   may be another member's by then). A revocation's last commit is made by the
   revocation callback itself, synchronously, with the positions of step 1 forced.
4. **The acknowledgement**: the broker's answer marks each partition committed; a
   failed commit makes the next one carry the partition's position again.
5. **A refused map**: the broker's ``offset.metadata.max.bytes`` is below Kafka's
   default: maps are bound to half of what was refused, down to none, and every
   partition commits again.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from bridge.kafka import offsetmap
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.model import Position, TopicPartitionKey
from bridge.runtime.state import Assignment

log = structlog.get_logger("bridge")

MIN_MAP_BYTES = 64  # below this a map names too little to be worth it


class Committer(Protocol):
    """Step 3: who sends the request (the Kafka thread)."""

    async def commit(self, positions: list[Position], wait: bool) -> bool: ...


class Checkpoint:
    """The commit job, step by step (see the module)."""

    def __init__(
        self, states: Assignment, kafka: Committer, metrics: Metrics, window: Window | None = None
    ) -> None:
        self._states = states
        self._kafka = kafka
        self._metrics = metrics
        self._window = window
        self.map_limit = offsetmap.MAX_BYTES  # the broker's offset.metadata.max.bytes, as far as known

    @property
    def records_progress(self) -> bool:
        return self._window is None or self._window.commits

    def committable(self, keys: set[TopicPartitionKey] | None = None, force: bool = False) -> list[Position]:
        """Steps 1 and 2: the positions to commit, each with its map."""
        if not self.records_progress:
            return []
        positions = [
            Position(state.key[0], state.key[1], *taken)
            for state in self._states.states_of(keys)
            if (taken := state.to_commit(force, self.map_limit)) is not None
        ]
        if left_out := sum(position.left_out for position in positions):
            self._metrics.map_overflow.inc(left_out)
        return positions

    async def commit(self, wait: bool = False) -> bool:
        """Steps 1 to 3: commit what changed since the last commit (``wait``: everything,
        synchronously); False when the broker refused it."""
        return await self._kafka.commit(self.committable(force=wait), wait)

    def acknowledged(self, positions: list[Position]) -> None:
        """Step 4: the broker has these positions."""
        for position in positions:
            if (state := self._states.get((position.topic, position.partition))) is not None:
                state.acknowledged(position.offset)

    def not_committed(self, key: TopicPartitionKey | None) -> None:
        """Step 4: a commit not made for one partition (None: for all it carried), refused
        or dropped as taken before a rebalance; the next commit carries their positions
        again."""
        for state in self._states.states_of(None if key is None else {key}):
            state.commit_again()

    def map_refused(self, refused_bytes: int | None) -> None:
        """Step 5: the broker refused a map of ``refused_bytes`` (None: of the current bound)
        as too large. A commit taken before the last shrink changes nothing."""
        refused = self.map_limit if refused_bytes is None else refused_bytes
        if refused > self.map_limit or not self.map_limit:
            return
        self.map_limit = refused // 2 if refused // 2 >= MIN_MAP_BYTES else 0
        self.not_committed(None)
        log.warning(
            "offset_map_too_large",
            refused_bytes=refused_bytes,
            limit_bytes=self.map_limit,
            hint="the broker's offset.metadata.max.bytes is below Kafka's default of 4096",
        )

    def behind(self) -> bool:
        """Whether the broker has yet to acknowledge a position it is to have."""
        return self.records_progress and any(state.uncommitted() for state in self._states)
