"""The partitions this instance owns: taking them on, handing them over cleanly, and
this replica's share of the account's rate. Called on the event loop (the Kafka
thread hands the consumer's callbacks over: :mod:`bridge.runtime.worker`).

A clean hand-over (a revocation, not a loss), step by step:

1. the partitions are marked releasing: no new command starts for them;
2. their lanes finish the commands on the wire, within ``delivery.rebalance_grace_s``,
   and their dead letters reach the broker;
3. their finished work is committed synchronously, with its finished-offsets map
   (:class:`~bridge.runtime.checkpoint.Checkpoint`, its positions forced);
4. they are forgotten: their lanes are cancelled, the rate share recomputed.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from bridge.intilery.ratelimit import Limiter
from bridge.kafka.sentlog import SentEarlier
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.model import Position, TopicPartitionKey
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.ports import RecordSource
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.safety.caps import Caps

log = structlog.get_logger("bridge")


class Partitions:
    """Assignment, clean hand-over (see the module's steps), rate share, lag, caught up."""

    def __init__(
        self,
        source: RecordSource,
        states: Assignment,
        checkpoint: Checkpoint,
        metrics: Metrics,
        *,
        grace_s: float,
        sinks: OwnTopicSinks | None = None,
        limiter: Limiter | None = None,
        breaker: Caps | None = None,
        local_state: bool = False,
        window: Window | None = None,
    ) -> None:
        """``limiter``: the account's rate limit, shared by the group's replicas (each takes
        the share of the partitions it holds); None when the rate is not shared.
        ``breaker``: the rules' flood breakers counted in this process, shared out alike.
        ``local_state``: the customer-safety state lives in this process (no Redis), valid
        for one replica: said when another member of the group holds partitions."""
        self._source = source
        self._states = states
        self._checkpoint = checkpoint
        self._metrics = metrics
        self._grace_s = grace_s
        self._sinks = sinks or OwnTopicSinks()
        self._limiter = limiter
        self._breaker = breaker
        self._warn_local_state = local_state
        self._window = window

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        for key in keys:
            state = self._states.assign(key, finished.get(key, ()))
            if starts and key in starts:
                state.start_at(starts[key])  # committed with the next commit until the broker has it
        self.share_rate()

    def sent_earlier(self, found: dict[TopicPartitionKey, SentEarlier]) -> None:
        """What the audit topic shows the previous owners sent after their last commits."""
        for key, sent in found.items():
            if (state := self._states.get(key)) is not None:
                state.inherit(sent)

    def share_rate(self) -> None:
        """This replica's share of the account's rate (and of the rules' flood breakers
        counted in this process): the share of the partitions it holds."""
        total, limiter = self._source.partitions_total, self._limiter
        if not total:
            return
        self._say_if_state_is_not_valid(total)
        if self._breaker is not None:
            self._breaker.share(len(self._states) / total)
        if limiter is None:
            return
        before = limiter.limit
        limiter.share(len(self._states) / total)
        if limiter.limit != before:
            log.info(
                "rate_limit_shared",
                partitions=len(self._states),
                of=total,
                per_second=round(limiter.limit, 2),
                burst=round(limiter.capacity, 1),
            )

    def _say_if_state_is_not_valid(self, total: int) -> None:
        """The state in this process is valid for one replica: said once another member of
        the group holds partitions (once per process)."""
        if self._warn_local_state and len(self._states) < total:
            self._warn_local_state = False
            reason = (
                "another member of the group holds partitions: this process' state is valid for one replica"
            )
            log.warning("dedupe_state_local", reason=reason, partitions=len(self._states), of=total)

    async def finish_revoked(self, keys: set[TopicPartitionKey]) -> list[Position]:
        """Steps 1 and 2 of a clean hand-over; gives the partitions' last commit (step 3)."""
        for state in self._states.states_of(keys):
            state.releasing = True
        deadline = time.monotonic() + self._grace_s
        finished = await self._states.wait(self._grace_s, keys)
        while self._sinks.pending and time.monotonic() < deadline:
            self._sinks.poll()  # their records finish on delivery
            await asyncio.sleep(0.01)
        if not finished or self._sinks.pending:
            log.warning(
                "rebalance_grace_expired",
                partitions=sorted(f"{t}[{p}]" for t, p in keys),
                grace_s=self._grace_s,
            )
        return self._checkpoint.committable(keys, force=True)

    def forget(self, keys: set[TopicPartitionKey]) -> None:
        """Step 4: their records still unfinished stay uncommitted, for the next owner."""
        for key in keys:
            self._states.revoke(key)
            self._metrics.forget_partition(*key)
        self.share_rate()

    def count_lost(self, key: TopicPartitionKey, records: int) -> None:
        self._metrics.records_lost.labels(key[0], str(key[1])).inc(records)

    def lag_measured(self, lag: list[tuple[TopicPartitionKey, int, float]], now: float) -> None:
        """Records and seconds behind per partition, and how long its oldest record waits."""
        metrics = self._metrics
        for key, records, seconds in lag:
            if (state := self._states.get(key)) is not None:
                state.lag = (records, seconds)
                metrics.lag_records.labels(key[0], str(key[1])).set(records)
                metrics.lag_seconds.labels(key[0], str(key[1])).set(seconds)
        for (topic, partition), waited in self._states.waiting(now).items():
            metrics.oldest_unfinished.labels(topic, str(partition)).set(waited)

    def caught_up(self) -> bool:
        """Every partition read to its end (or the replay window's), its records finished and
        committed, no dead letter or audit entry on its way."""
        return (
            self._states.read_through(self._window)
            and self._states.unfinished() == 0
            and not self._checkpoint.behind()
            and not self._sinks.pending
        )
