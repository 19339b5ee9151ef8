"""What the consumer (:class:`~bridge.kafka.source.Source`) tells its owner, on the
thread that fetches: assignments, revocations, commit answers, retention losses."""

from __future__ import annotations

from bridge.kafka.sentlog import SentEarlier
from bridge.model import Position, TopicPartitionKey


class SourceListener:
    """What the :class:`Source` tells its owner; every method is called on the thread
    that calls :meth:`Source.fetch` (librdkafka serves its callbacks there)."""

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        """Partitions assigned, each with the offsets its last commit named finished;
        ``starts``: those the group never committed, at the offset they start from."""

    def sent_earlier(self, found: dict[TopicPartitionKey, SentEarlier]) -> None:
        """Partitions assigned lately, each with the commands the audit topic shows its
        previous owner sent after its last commit; told before any of their records."""

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> list[Position]:
        """Partitions being taken away (``lost``: without the chance to commit): the last
        commit for them, which the source makes before it lets them go (none when lost)."""
        return []

    def released(self, keys: list[TopicPartitionKey]) -> None:
        """Partitions taken away, their last commit made: what was known of them may go."""

    def committed(self, positions: list[Position]) -> None:
        """The broker acknowledged a commit of these partitions."""

    def not_committed(self, key: TopicPartitionKey | None) -> None:
        """A commit was not made for one partition (``None``: for all it carried): the
        broker refused it, or it was dropped as taken before a rebalance."""

    def map_too_large(self, refused_bytes: int | None) -> None:
        """The broker refused a commit because its metadata (the map, of ``refused_bytes``
        at most, when known) is too large."""

    def partitions_counted(self) -> None:
        """:attr:`Source.partitions_total` was counted again (after an assignment)."""

    def lost_to_retention(self, key: TopicPartitionKey, records: int) -> None:
        """librdkafka moved a partition past ``records`` records it never read: the offset
        it was at no longer exists (deleted by retention)."""
