"""What a test can ask a ``TestStreamClient`` about a topic, and kpn/kstreams'
``TopicManager`` over the client in use."""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kstreams.records import ConsumerRecord, TopicPartition
from kstreams.streams import Stream

if TYPE_CHECKING:
    from kstreams.test_utils.client import TestStreamClient


@dataclass(frozen=True, slots=True)
class _Lag:
    stream: str
    group_id: str | None
    tp: TopicPartition
    done: int
    end: int

    def __str__(self) -> str:
        group = f"group {self.group_id!r}" if self.group_id else "no group"
        return (
            f"stream {self.stream!r} ({group}): {self.tp.topic}[{self.tp.partition}] "
            f"handled up to offset {self.done} of {self.end}"
        )


class TopicInfo:
    """A live view of one topic of a client's cluster: its records and who consumed them.

    Values are read when asked for, so one ``TopicInfo`` can be kept and
    asked again after more records were sent or after the client exited.
    """

    def __init__(self, client: TestStreamClient, name: str) -> None:
        self._client = client
        self.name = name

    def __repr__(self) -> str:
        return f"<TopicInfo {self.name!r}>"

    def _tps(self) -> list[TopicPartition]:
        cluster = self._client.cluster
        return [TopicPartition(self.name, p) for p in sorted(cluster.partitions_for(self.name))]

    @property
    def partitions(self) -> int:
        """How many partitions the topic has."""
        return len(self._client.cluster.partitions_for(self.name))

    @property
    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next record will get."""
        cluster = self._client.cluster
        return {tp.partition: cluster.end_offset(tp) for tp in self._tps()}

    @property
    def total_events(self) -> int:
        """How many records were produced to the topic, on every partition."""
        return sum(self.end_offsets.values())

    def records(self) -> list[ConsumerRecord[bytes | None, bytes | None]]:
        """Every record of the topic as stored (raw bytes), partition by partition."""
        cluster = self._client.cluster
        return [record for tp in self._tps() for record in cluster.records(tp)]

    @property
    def groups(self) -> frozenset[str]:
        """The groups of the engine's streams that consume this topic."""
        return frozenset(
            stream.group_id
            for stream in self._client.engine.streams
            if stream.group_id is not None and _subscribes(stream, self.name)
        )

    def _group(self, group_id: str | None) -> str:
        if group_id is not None:
            return group_id
        groups = self.groups
        if len(groups) != 1:
            found = ", ".join(sorted(groups)) or "none"
            raise ValueError(
                f"topic {self.name!r} is consumed by groups: {found}; pass group_id= to choose"
            )
        return next(iter(groups))

    def committed(self, group_id: str | None = None) -> dict[int, int]:
        """Per partition, the offset ``group_id`` committed (partitions without a commit left out).

        Without ``group_id``, the one group of the engine's streams that
        consumes the topic (``ValueError`` when there are none or several).
        """
        group = self._group(group_id)
        cluster = self._client.cluster
        offsets = {tp.partition: cluster.committed(group, tp) for tp in self._tps()}
        return {partition: offset for partition, offset in offsets.items() if offset is not None}

    def total_committed(self, group_id: str | None = None) -> int:
        """How many of the topic's records ``group_id`` committed, on every partition."""
        return sum(self.committed(group_id).values())

    @property
    def consumed(self) -> bool:
        """Whether at least one group consumes the topic and every such group committed
        every record. Auto-commit runs every ``auto_commit_interval_ms`` and on stop, so
        inside the client's block this may lag; after the block it is final."""
        groups = self.groups
        if not groups:
            return False
        ends = self.end_offsets
        return all(
            self.committed(group).get(partition, 0) >= end
            for group in groups
            for partition, end in ends.items()
        )

    @property
    def taken(self) -> int:
        """How many records ``client.get_event`` took from this topic."""
        return sum(self._client._cursor(self.name).values())

    def is_empty(self) -> bool:
        """Whether ``client.get_event`` has no record left to take from this topic."""
        return self.taken >= self.total_events


def _subscribes(stream: Stream, topic: str) -> bool:
    if stream.subscribe_by_pattern:
        # Consumers match a pattern at the start of the name, as aiokafka does.
        return re.match(stream.topics[0], topic) is not None
    return topic in stream.topics


# The client a test entered last: kpn/kstreams' TopicManager is global, so
# its compatible form answers for the latest client, which is the one of the
# running test (clients are entered one at a time). A weak reference, so a
# finished test's cluster is not kept alive by it.
_latest: list[weakref.ref[TestStreamClient]] = []


def _entered(client: TestStreamClient) -> None:
    _latest[:] = [weakref.ref(client)]


class ManagedTopic(TopicInfo):
    """A topic as kpn/kstreams' ``TopicManager.get`` shows it."""

    @property
    def consumed(self) -> bool:
        """Whether no running stream has records of this topic left to handle
        (True when no stream consumes the topic: nothing is waiting for one)."""
        return not any(lag.tp.topic == self.name for lag in self._client._lags())

    def offset(self, *, partition: int) -> int:
        """The offset of the latest record of ``partition`` (-1 when it has none)."""
        return self.end_offsets.get(partition, 0) - 1


class TopicManager:
    """kpn/kstreams' topic registry, answered from the latest ``TestStreamClient``.

    ``TopicManager.get(name)`` is ``client.get_topic(name)`` of the client
    the test entered last; ``TopicManager.all_messages_consumed()`` tells
    whether the engine's running streams have handled every record of the
    topics they consume.
    """

    @staticmethod
    def _client() -> TestStreamClient:
        client = _latest[0]() if _latest else None
        if client is None:
            raise ValueError("no TestStreamClient in use: enter one with 'async with client:'")
        return client

    @classmethod
    def get(cls, name: str) -> ManagedTopic:
        """The topic ``name``; ``ValueError`` if the client's cluster has no such topic."""
        client = cls._client()
        if name not in client.cluster.topics():
            raise ValueError(
                f"topic {name!r} does not exist yet: nothing was sent to it and it is not "
                "in TestStreamClient(topics=[...])"
            )
        return ManagedTopic(client, name)

    @classmethod
    def all_messages_consumed(cls) -> bool:
        """Whether the running streams handled every record of the topics they consume."""
        return not cls._client()._lags()
