"""The cluster object: every topic, group and transactional id of one in-process Kafka."""

from __future__ import annotations

import itertools
import random
import time
from typing import Final

from kstreams.backends.memory.group import Group
from kstreams.backends.memory.log import PartitionLog, TxnMark, as_bytes
from kstreams.backends.memory.transactions import TransactionCoordinator
from kstreams.backends.murmur2 import partition_for_key
from kstreams.exceptions import ConfigError, UnknownTopicOrPartitionError
from kstreams.ports import RawRecord
from kstreams.records import CREATE_TIME, Headers, RecordMetadata, TopicPartition

__all__ = ["MemoryCluster", "default_cluster", "reset_default_cluster"]

_now = time.time
_random = random.random

_DEFAULT_PARTITIONS: Final = 1


class MemoryCluster:
    """All the state of one in-process Kafka cluster: topics, logs, groups, commits.

    Consumers and producers built on the same cluster see each other; two
    clusters share nothing.
    """

    def __init__(self, default_partitions: int = _DEFAULT_PARTITIONS) -> None:
        if not isinstance(default_partitions, int) or default_partitions < 1:
            raise ConfigError(
                f"default_partitions must be a positive int, got {default_partitions!r}"
            )
        self.default_partitions = default_partitions
        self._topics: dict[str, list[PartitionLog]] = {}
        self._groups: dict[str, Group] = {}
        # Consumers without a group_id, each alone in a group of its own.
        self._private_groups: set[Group] = set()
        self._member_seq = itertools.count()
        self._transactions = TransactionCoordinator(self)

    def __repr__(self) -> str:
        return f"MemoryCluster(topics={len(self._topics)}, groups={len(self._groups)})"

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create ``name`` with ``partitions`` partitions (the cluster default if omitted).

        Creating a topic that exists with the same count does nothing; with a
        different count it raises ``ConfigError``.
        """
        self._create(name, self.default_partitions if partitions is None else partitions)

    def topics(self) -> frozenset[str]:
        """The names of every topic."""
        return frozenset(self._topics)

    def partitions_for(self, topic: str) -> frozenset[int]:
        """The partition numbers of an existing ``topic``."""
        return frozenset(range(len(self._existing(topic))))

    def end_offset(self, tp: TopicPartition) -> int:
        """The high watermark of ``tp``: the offset the next entry appended will get.

        Transaction markers take an offset each, as in Kafka.
        """
        return self._partition(tp).end

    def last_stable_offset(self, tp: TopicPartition) -> int:
        """The first offset of the oldest open transaction on ``tp``, or its end if none is
        open: where a read_committed consumer stops."""
        return self._partition(tp).last_stable()

    def records(self, tp: TopicPartition) -> tuple[RawRecord, ...]:
        """Every record of ``tp`` in offset order, aborted ones included, markers not."""
        log = self._partition(tp)
        records, _ = log.read(0, log.end, committed=False, fetch=False)
        return tuple(records)

    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The offset ``group_id`` committed for ``tp``, or ``None``."""
        group = self._groups.get(group_id)
        return None if group is None else group.committed.get(tp)

    def members(self, group_id: str) -> dict[str, frozenset[TopicPartition]]:
        """The members of ``group_id`` and their assignment in the current generation."""
        group = self._groups.get(group_id)
        if group is None:
            return {}
        return {member: group.assignments.get(member, frozenset()) for member in group.members}

    def append(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> RecordMetadata:
        """Produce one record synchronously, as a producer with default settings would."""
        value = as_bytes("value", value)
        key = as_bytes("key", key)
        partitions = self._partitions(topic)
        if partition is None:
            partition = self._default_partition(key, len(partitions))
        offset, timestamp = self._append(
            topic, partitions, partition, key, value, timestamp_ms, headers
        )
        return RecordMetadata(topic, partition, offset, timestamp, CREATE_TIME)

    # -- internals shared with the adapters

    def _create(self, name: str, partitions: int) -> list[PartitionLog]:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a topic name must be a non-empty str, got {name!r}")
        if not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"partitions must be a positive int, got {partitions!r}")
        existing = self._topics.get(name)
        if existing is not None:
            if len(existing) != partitions:
                raise ConfigError(
                    f"topic {name!r} exists with {len(existing)} partitions, not {partitions}"
                )
            return existing
        created = [PartitionLog(name, number) for number in range(partitions)]
        self._topics[name] = created
        for group in [*self._groups.values(), *self._private_groups]:
            group.topic_created(name)
        return created

    def _partitions(self, topic: str) -> list[PartitionLog]:
        """The partitions of ``topic``, auto-created with the default count if new."""
        partitions = self._topics.get(topic)
        if partitions is None:
            partitions = self._create(topic, self.default_partitions)
        return partitions

    def _existing(self, topic: str) -> list[PartitionLog]:
        partitions = self._topics.get(topic)
        if partitions is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        return partitions

    def _partition(self, tp: TopicPartition) -> PartitionLog:
        partitions = self._existing(tp.topic)
        if not 0 <= tp.partition < len(partitions):
            raise UnknownTopicOrPartitionError(
                f"{tp.topic!r} has {len(partitions)} partitions, no partition {tp.partition}"
            )
        return partitions[tp.partition]

    @staticmethod
    def _default_partition(key: bytes | None, count: int) -> int:
        if count == 1:
            return 0
        if key is None:
            # Uniform like aiokafka's random.choice, at a third of the cost.
            return int(_random() * count)
        return partition_for_key(key, count)

    @staticmethod
    def _append(
        topic: str,
        partitions: list[PartitionLog],
        partition: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None,
        headers: Headers,
        txn: TxnMark | None = None,
    ) -> tuple[int, int]:
        if type(partition) is not int or not 0 <= partition < len(partitions):
            raise UnknownTopicOrPartitionError(
                f"{topic!r} has {len(partitions)} partitions, no partition {partition!r}"
            )
        timestamp = int(_now() * 1000) if timestamp_ms is None else timestamp_ms
        headers = tuple((str(name), bytes(data)) for name, data in headers) if headers else ()
        return partitions[partition].append(timestamp, key, value, headers, txn), timestamp

    def _group(self, group_id: str | None) -> Group:
        if group_id is None:
            group = Group(self, None)
            self._private_groups.add(group)
            return group
        existing = self._groups.get(group_id)
        if existing is None:
            existing = self._groups[group_id] = Group(self, group_id)
        return existing

    def _next_member_id(self, client_id: str) -> str:
        return f"{client_id}-{next(self._member_seq):08d}"


_default: MemoryCluster | None = None


def default_cluster() -> MemoryCluster:
    """The process-wide cluster used by ``Memory()`` settings given no cluster."""
    global _default
    if _default is None:
        _default = MemoryCluster()
    return _default


def reset_default_cluster(cluster: MemoryCluster | None = None) -> MemoryCluster:
    """Replace the process-wide cluster (with a new empty one if none is given) and return it."""
    global _default
    _default = cluster if cluster is not None else MemoryCluster()
    return _default
