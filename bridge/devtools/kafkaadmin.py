"""What tests ask of a running Kafka cluster: topics, ACLs, partition leaders, group
coordinators (:class:`~bridge.devtools.kafka.KafkaCluster` is one)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)


class ClusterAdmin:
    nodes: int
    _admin: AdminClient | None = None

    @property
    def bootstrap_servers(self) -> str:
        raise NotImplementedError

    def admin(self) -> AdminClient:
        """One admin client for the cluster's life (a dropped client cancels its requests)."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        return self._admin

    def create_topic(self, name: str, partitions: int = 1, wait: bool = True, **config: str) -> None:
        """Create a topic and (``wait``) wait until every partition has a leader."""
        replication = min(3, self.nodes)
        futures = self.admin().create_topics([NewTopic(name, partitions, replication, config=config)])
        futures[name].result(timeout=30)
        if wait:
            self.wait_for(
                lambda: all(self.leader(name, p) >= 0 for p in range(partitions)), f"leaders of {name}"
            )

    def refuse_writes(self, topic: str, refuse: bool = True) -> None:
        """Deny (or allow again) every client's writes to a topic: the broker then answers
        TOPIC_AUTHORIZATION_FAILED. Needs a cluster started with ``AUTHORIZER``."""
        fields = (
            ResourceType.TOPIC,
            topic,
            ResourcePatternType.LITERAL,
            "User:ANONYMOUS",
            "*",
            AclOperation.WRITE,
            AclPermissionType.DENY,
        )
        admin = self.admin()
        if refuse:
            [future] = admin.create_acls([AclBinding(*fields)]).values()
        else:
            [future] = admin.delete_acls([AclBindingFilter(*fields)]).values()
        future.result(timeout=30)

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading a partition (-1 while there is none)."""
        metadata = self.admin().list_topics(topic, timeout=10).topics[topic]
        found = metadata.partitions.get(partition)
        return -1 if found is None or metadata.error is not None else int(found.leader)

    def coordinator(self, group: str) -> int:
        """The node id coordinating a consumer group."""
        [future] = self.admin().describe_consumer_groups([group]).values()
        return int(future.result(timeout=10).coordinator.id)

    def wait_for(self, predicate: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if predicate():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
