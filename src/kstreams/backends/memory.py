"""The in-process broker: a Kafka cluster that lives in a ``MemoryCluster`` object.

Append-only partition logs, consumer groups with eager rebalances behind a
join barrier, committed offsets per group. Members serve rebalances inside
``getmany`` (and ``start``), the way a Kafka consumer serves them in
``poll``; a member that does not come back within its rebalance timeout is
dropped from the group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Final

from kstreams.backends.murmur2 import partition_for_key
from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    ProducerClosedError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from kstreams.options import CONSUMER_OPTIONS, PRODUCER_OPTIONS, check_options
from kstreams.ports import RawRecord, RebalanceCallbacks, RecordBatch
from kstreams.records import CREATE_TIME, ConsumerRecord, Headers, RecordMetadata, TopicPartition

__all__ = [
    "MemoryCluster",
    "MemoryConsumer",
    "MemoryProducer",
    "default_cluster",
    "reset_default_cluster",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_POLL_RECORDS: Final = 500
DEFAULT_SESSION_TIMEOUT_MS: Final = 10_000
DEFAULT_MAX_REQUEST_SIZE: Final = 1_048_576
ASSIGNORS: Final = ("roundrobin", "range")
# aiokafka's sizing of one record in its own batch: batch header plus the
# worst-case per-record overhead, plus the varint-prefixed fields.
_BATCH_HEADER_SIZE: Final = 61
_MAX_RECORD_OVERHEAD: Final = 21
# A real producer's send() only yields when its buffer is full; yielding on
# every call would cost more than the append itself (a loop turn is ~2.5 us
# on the project's machines), so send() yields once per this many calls.
_SEND_CHECKPOINT_EVERY: Final = 64

_NEW, _STARTED, _STOPPED = "new", "started", "stopped"

_now = time.time
_random = random.random


_make_record = ConsumerRecord


def _varint_size(value: int) -> int:
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    size = _BATCH_HEADER_SIZE + _MAX_RECORD_OVERHEAD
    for field in (key, value):
        length = -1 if field is None else len(field)
        size += _varint_size(length) + max(length, 0)
    size += _varint_size(len(headers))
    for name, data in headers:
        encoded = name.encode()
        size += _varint_size(len(encoded)) + len(encoded) + _varint_size(len(data)) + len(data)
    return size


def _as_bytes(what: str, data: Any) -> bytes | None:
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or None (or set a {what}_serializer), got {data!r}")


def _wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Partition:
    __slots__ = ("log", "waiters")

    def __init__(self) -> None:
        # The index of a record in ``log`` is its offset: nothing is ever
        # removed, so the log start stays 0.
        self.log: list[RawRecord] = []
        self.waiters: set[asyncio.Future[None]] = set()


class MemoryCluster:
    """All the state of one in-process Kafka cluster: topics, logs, groups, commits.

    Consumers and producers built on the same cluster see each other; two
    clusters share nothing.
    """

    def __init__(self, default_partitions: int = 1) -> None:
        if not isinstance(default_partitions, int) or default_partitions < 1:
            raise ConfigError(
                f"default_partitions must be a positive int, got {default_partitions!r}"
            )
        self.default_partitions = default_partitions
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        # Consumers without a group_id, each alone in a group of its own.
        self._private_groups: set[_Group] = set()
        self._member_seq = itertools.count()

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
        """The offset the next record appended to ``tp`` will get."""
        return len(self._partition(tp).log)

    def records(self, tp: TopicPartition) -> tuple[RawRecord, ...]:
        """Every record of ``tp``, in offset order."""
        return tuple(self._partition(tp).log)

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
        value = _as_bytes("value", value)
        key = _as_bytes("key", key)
        partitions = self._partitions(topic)
        if partition is None:
            partition = self._default_partition(key, len(partitions))
        offset, timestamp = self._append(
            topic, partitions, partition, key, value, timestamp_ms, headers
        )
        return RecordMetadata(topic, partition, offset, timestamp, CREATE_TIME)

    # -- internals shared with the adapters

    def _create(self, name: str, partitions: int) -> list[_Partition]:
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
        created = [_Partition() for _ in range(partitions)]
        self._topics[name] = created
        for group in [*self._groups.values(), *self._private_groups]:
            group.topic_created(name)
        return created

    def _partitions(self, topic: str) -> list[_Partition]:
        """The partitions of ``topic``, auto-created with the default count if new."""
        partitions = self._topics.get(topic)
        if partitions is None:
            partitions = self._create(topic, self.default_partitions)
        return partitions

    def _existing(self, topic: str) -> list[_Partition]:
        partitions = self._topics.get(topic)
        if partitions is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        return partitions

    def _partition(self, tp: TopicPartition) -> _Partition:
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
        partitions: list[_Partition],
        partition: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None,
        headers: Headers,
    ) -> tuple[int, int]:
        if type(partition) is not int or not 0 <= partition < len(partitions):
            raise UnknownTopicOrPartitionError(
                f"{topic!r} has {len(partitions)} partitions, no partition {partition!r}"
            )
        target = partitions[partition]
        log = target.log
        offset = len(log)
        timestamp = int(_now() * 1000) if timestamp_ms is None else timestamp_ms
        headers = tuple((str(name), bytes(data)) for name, data in headers) if headers else ()
        log.append(
            _make_record(
                topic,
                partition,
                offset,
                timestamp,
                CREATE_TIME,
                key,
                value,
                None,
                -1 if key is None else len(key),
                -1 if value is None else len(value),
                headers,
            )
        )
        if target.waiters:
            waiters, target.waiters = target.waiters, set()
            _wake(waiters)
        return offset, timestamp

    def _group(self, group_id: str | None) -> _Group:
        if group_id is None:
            group = _Group(self, None)
            self._private_groups.add(group)
            return group
        existing = self._groups.get(group_id)
        if existing is None:
            existing = self._groups[group_id] = _Group(self, group_id)
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


class _Group:
    """One consumer group's coordinator state: members, the join barrier, commits."""

    def __init__(self, cluster: MemoryCluster, group_id: str | None) -> None:
        self.cluster = cluster
        self.group_id = group_id
        self.members: dict[str, MemoryConsumer] = {}
        self.generation = 0
        self.rebalancing = False
        self.joined: set[str] = set()
        self.rebalance_started = 0.0
        self.assignments: dict[str, frozenset[TopicPartition]] = {}
        self.committed: dict[TopicPartition, int] = {}

    def check_protocol(self, strategies: Sequence[str]) -> None:
        common = set(strategies)
        for member in self.members.values():
            common &= set(member._strategies)
        if not common:
            raise KafkaError(
                f"group {self.group_id!r}: assignment strategies {list(strategies)} "
                "share none with the group's members (inconsistent group protocol)"
            )

    def add(self, member: MemoryConsumer) -> None:
        self.members[member._member_id] = member
        self.request_rebalance()

    def remove(self, member_id: str) -> None:
        if self.members.pop(member_id, None) is None:
            return
        self.joined.discard(member_id)
        self.assignments.pop(member_id, None)
        if not self.members:
            self.rebalancing = False
            self.joined.clear()
            self.assignments = {}
            if self.group_id is None:
                self.cluster._private_groups.discard(self)
        elif self.rebalancing:
            self.maybe_complete()
        else:
            self.request_rebalance()

    def request_rebalance(self) -> None:
        if not self.rebalancing:
            self.rebalancing = True
            self.joined = set()
            self.rebalance_started = time.monotonic()
        self.wake_all()

    def join(self, member_id: str) -> None:
        self.joined.add(member_id)
        self.maybe_complete()

    def maybe_complete(self) -> None:
        if not self.rebalancing or not self.joined.issuperset(self.members):
            return
        self.rebalancing = False
        self.generation += 1
        self.assignments = self._assign() if self.members else {}
        self.wake_all()

    def expire(self, now: float) -> None:
        """Drop members that did not rejoin the current rebalance within their timeout."""
        if not self.rebalancing:
            return
        for member_id, member in list(self.members.items()):
            if member_id in self.joined:
                continue
            if now >= self.rebalance_started + member._rebalance_timeout:
                logger.warning(
                    "member %s of group %r did not rejoin within %.0f ms; removed from the group",
                    member_id,
                    self.group_id,
                    member._rebalance_timeout * 1000,
                )
                self.members.pop(member_id)
                self.assignments.pop(member_id, None)
        self.maybe_complete()

    def next_deadline(self) -> float | None:
        if not self.rebalancing:
            return None
        pending = [m._rebalance_timeout for i, m in self.members.items() if i not in self.joined]
        return self.rebalance_started + min(pending) if pending else None

    def waiting_on_polling_member(self) -> bool:
        """Whether a member that still has to rejoin is inside ``getmany``, so will soon."""
        return self.rebalancing and any(
            member._polling for i, member in self.members.items() if i not in self.joined
        )

    def topic_created(self, topic: str) -> None:
        if any(member._matches_new_topic(topic) for member in self.members.values()):
            self.request_rebalance()

    def wake_all(self) -> None:
        for member in list(self.members.values()):
            member._wake()

    def _assign(self) -> dict[str, frozenset[TopicPartition]]:
        leader = next(iter(self.members.values()))
        strategy = next(
            (
                s
                for s in leader._strategies
                if all(s in m._strategies for m in self.members.values())
            ),
            leader._strategies[0],
        )
        topics = self.cluster._topics
        subscriptions = {
            member_id: member._subscribed_topics(topics)
            for member_id, member in sorted(self.members.items())
        }
        counts = {
            topic: len(topics[topic]) for wanted in subscriptions.values() for topic in wanted
        }
        assign = _range_assign if strategy == "range" else _round_robin_assign
        return {member: frozenset(tps) for member, tps in assign(subscriptions, counts).items()}


def _range_assign(
    subscriptions: dict[str, frozenset[str]], counts: dict[str, int]
) -> dict[str, list[TopicPartition]]:
    result: dict[str, list[TopicPartition]] = {member: [] for member in subscriptions}
    for topic in sorted(counts):
        consumers = [member for member, wanted in subscriptions.items() if topic in wanted]
        share, extra = divmod(counts[topic], len(consumers))
        for index, member in enumerate(consumers):
            start = share * index + min(index, extra)
            length = share + (1 if index < extra else 0)
            result[member].extend(TopicPartition(topic, p) for p in range(start, start + length))
    return result


def _round_robin_assign(
    subscriptions: dict[str, frozenset[str]], counts: dict[str, int]
) -> dict[str, list[TopicPartition]]:
    result: dict[str, list[TopicPartition]] = {member: [] for member in subscriptions}
    ring = itertools.cycle(subscriptions)
    for topic in sorted(counts):
        for partition in range(counts[topic]):
            member = next(ring)
            while topic not in subscriptions[member]:
                member = next(ring)
            result[member].append(TopicPartition(topic, partition))
    return result


def _strategy_names(strategy: Any) -> tuple[str, ...]:
    items = (
        [strategy] if isinstance(strategy, str) or not isinstance(strategy, Iterable) else strategy
    )
    names: list[str] = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if name not in ASSIGNORS:
            raise ConfigError(
                f"the memory backend supports partition_assignment_strategy {ASSIGNORS}, "
                f"got {item!r}"
            )
        names.append(name)
    if not names:
        raise ConfigError("partition_assignment_strategy is empty")
    return tuple(names)


class MemoryConsumer:
    def __init__(
        self, cluster: MemoryCluster, *, group_id: str | None = None, **options: Any
    ) -> None:
        check_options("memory consumer", options, CONSUMER_OPTIONS - {"group_id"})
        if options.get("group_instance_id") is not None:
            raise ConfigError("the memory backend has no static membership (group_instance_id)")
        self._cluster = cluster
        self._group_id = group_id
        self._client_id: str = options.get("client_id") or "memory"
        self._auto_offset_reset: str = options.get("auto_offset_reset", "latest")
        if self._auto_offset_reset not in ("earliest", "latest", "none"):
            raise ConfigError(f"auto_offset_reset got {self._auto_offset_reset!r}")
        self._max_poll_records: int = options.get("max_poll_records") or DEFAULT_MAX_POLL_RECORDS
        timeout_ms = options.get("rebalance_timeout_ms") or options.get(
            "session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS
        )
        self._rebalance_timeout: float = timeout_ms / 1000
        self._strategies = _strategy_names(
            options.get("partition_assignment_strategy", "roundrobin")
        )

        self._topics: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._listener: RebalanceCallbacks | None = None

        self._state = _NEW
        self._group: _Group | None = None
        self._member_id = ""
        self._generation: int | None = None
        self._serving = False
        self._polling = 0
        self._wakers: set[asyncio.Future[None]] = set()

        self._assignment: frozenset[TopicPartition] = frozenset()
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._positions: dict[TopicPartition, int | None] = {}
        self._unresolved: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._fetchable: list[tuple[TopicPartition, _Partition]] = []
        self._highwater: dict[TopicPartition, int] = {}
        self._next_first = 0

    def __repr__(self) -> str:
        return f"MemoryConsumer(group_id={self._group_id!r}, {self._member_id!r}, {self._state})"

    # -- lifecycle

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        self._check_not_stopped()
        if isinstance(topics, str):
            topics = [topics]
        if topics and pattern is not None:
            raise IllegalStateError("subscribe to topics or to a pattern, not both")
        if pattern is not None:
            try:
                self._pattern = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"invalid subscription pattern {pattern!r}: {exc}") from exc
            self._topics = frozenset()
        else:
            for topic in topics:
                self._cluster._partitions(topic)
            self._topics = frozenset(topics)
            self._pattern = None
        self._listener = listener
        if self._group is not None and self._member_id in self._group.members:
            self._group.request_rebalance()

    async def start(self) -> None:
        self._check_not_stopped()
        if self._state == _STARTED:
            raise IllegalStateError("the consumer is already started")
        await asyncio.sleep(0)
        self._check_not_stopped()
        group = self._cluster._group(self._group_id)
        group.check_protocol(self._strategies)
        self._state = _STARTED
        self._group = group
        self._member_id = self._cluster._next_member_id(self._client_id)
        group.add(self)
        # Like a Kafka client, start() returns once assigned when the other
        # members are polling; members busy elsewhere rejoin in their next
        # getmany, which then hands this one its assignment.
        while True:
            await self._serve()
            self._check_not_stopped()
            if not group.rebalancing and self._generation == group.generation:
                return
            if not group.waiting_on_polling_member():
                return
            await self._wait(self._group_wait(None), ())
            group.expire(time.monotonic())

    async def stop(self) -> None:
        if self._state == _STOPPED:
            return
        await asyncio.sleep(0)
        if self._state == _STOPPED:
            return
        self._state = _STOPPED
        group = self._group
        if group is not None:
            group.remove(self._member_id)
        self._clear_assignment()
        _wake(list(self._wakers))

    # -- fetching

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> RecordBatch:
        self._check_started()
        limit = self._max_poll_records if max_records is None else max_records
        if limit < 1:
            raise ConfigError(f"max_records must be a positive int, got {max_records!r}")
        group = self._group
        assert group is not None
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        # Counted from the start, checkpoint included: a member starting
        # waits for polling members to rejoin rather than leaving unassigned.
        self._polling += 1
        try:
            await asyncio.sleep(0)
            while True:
                if group.rebalancing:
                    group.expire(time.monotonic())
                await self._serve()
                self._check_started()
                if self._unresolved:
                    raise NoOffsetForPartitionError(
                        f"no committed offset for {sorted(self._unresolved)} "
                        'and auto_offset_reset="none"'
                    )
                batch = self._fetch(limit)
                if batch:
                    return batch
                now = time.monotonic()
                if now >= deadline:
                    return {}
                await self._wait(self._group_wait(deadline), self._fetchable)
        finally:
            self._polling -= 1
            if not self._polling and group.rebalancing and self._member_id not in group.joined:
                # A member starting may be waiting for this one to rejoin.
                group.wake_all()

    def _fetch(self, limit: int) -> RecordBatch:
        fetchable = self._fetchable
        count = len(fetchable)
        if not count:
            return {}
        # Start one partition further each call so a small max_records does
        # not keep serving the first partitions only.
        first = self._next_first % count
        self._next_first = first + 1
        batch: RecordBatch = {}
        positions = self._positions
        highwater = self._highwater
        for tp, partition in fetchable[first:] + fetchable[:first]:
            log = partition.log
            end = len(log)
            highwater[tp] = end
            position = positions[tp]
            assert position is not None
            if not 0 <= position <= end:
                position = self._reset_out_of_range(tp, position, end)
            if position == end:
                continue
            stop = position + limit
            if stop > end:
                stop = end
            batch[tp] = log[position:stop]
            positions[tp] = stop
            limit -= stop - position
            if not limit:
                break
        return batch

    def _reset_out_of_range(self, tp: TopicPartition, position: int, end: int) -> int:
        if self._auto_offset_reset == "none":
            raise OffsetOutOfRangeError(f"position {position} of {tp} is outside [0, {end}]")
        position = 0 if self._auto_offset_reset == "earliest" else end
        self._positions[tp] = position
        return position

    def _group_wait(self, deadline: float | None) -> float:
        """The monotonic time to wake by: ``deadline``, or earlier to expire stuck members."""
        assert self._group is not None
        expiry = self._group.next_deadline()
        if expiry is None:
            return deadline if deadline is not None else time.monotonic() + 3600
        return expiry if deadline is None else min(deadline, expiry)

    async def _wait(
        self, wake_at: float, fetchable: Sequence[tuple[TopicPartition, _Partition]]
    ) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakers.add(waiter)
        for _, partition in fetchable:
            partition.waiters.add(waiter)
        timer = loop.call_later(max(wake_at - time.monotonic(), 0), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._wakers.discard(waiter)
            for _, partition in fetchable:
                partition.waiters.discard(waiter)

    def _wake(self) -> None:
        if self._wakers:
            _wake(list(self._wakers))

    # -- the rebalance protocol, member side

    async def _serve(self) -> None:
        """Take every rebalance step that needs no other member: revoke, rejoin, take assignment."""
        if self._serving:
            return
        group = self._group
        assert group is not None
        self._serving = True
        try:
            while self._state == _STARTED:
                if self._member_id not in group.members:
                    # Dropped for missing a rebalance: revoke, then join anew.
                    await self._revoke()
                    if self._state != _STARTED:
                        return
                    self._member_id = self._cluster._next_member_id(self._client_id)
                    group.add(self)
                    group.join(self._member_id)
                elif group.rebalancing:
                    if self._member_id in group.joined:
                        return
                    await self._revoke()
                    if self._member_id in group.members and group.rebalancing:
                        group.join(self._member_id)
                elif self._generation != group.generation:
                    await self._take_assignment(
                        group.generation, group.assignments.get(self._member_id, frozenset())
                    )
                else:
                    return
        finally:
            self._serving = False

    async def _revoke(self) -> None:
        revoked = self._assignment
        if self._listener is not None:
            try:
                await self._listener.on_partitions_revoked(revoked)
            except Exception:
                # As aiokafka does: the rebalance goes on, the error is logged.
                logger.exception("on_partitions_revoked failed for %s", sorted(revoked))
        self._clear_assignment()

    async def _take_assignment(self, generation: int, assigned: frozenset[TopicPartition]) -> None:
        assert self._group is not None
        committed = self._group.committed if self._group_id is not None else {}
        self._generation = generation
        self._assignment = assigned
        for tp in sorted(assigned):
            partition = self._cluster._partition(tp)
            self._partitions[tp] = partition
            position = committed.get(tp)
            if position is None:
                if self._auto_offset_reset == "earliest":
                    position = 0
                elif self._auto_offset_reset == "latest":
                    position = len(partition.log)
                else:
                    self._unresolved.add(tp)
            self._positions[tp] = position
        self._refresh_fetchable()
        if self._listener is not None:
            try:
                await self._listener.on_partitions_assigned(assigned)
            except Exception:
                logger.exception("on_partitions_assigned failed for %s", sorted(assigned))

    def _clear_assignment(self) -> None:
        self._assignment = frozenset()
        self._partitions = {}
        self._positions = {}
        self._unresolved = set()
        self._paused = set()
        self._fetchable = []

    def _refresh_fetchable(self) -> None:
        self._fetchable = [
            (tp, self._partitions[tp]) for tp in sorted(self._assignment) if tp not in self._paused
        ]

    def _subscribed_topics(self, topics: Iterable[str]) -> frozenset[str]:
        if self._pattern is None:
            return self._topics
        # aiokafka matches a pattern at the start of the name (re.match).
        return frozenset(topic for topic in topics if self._pattern.match(topic))

    def _matches_new_topic(self, topic: str) -> bool:
        return self._pattern is not None and self._pattern.match(topic) is not None

    # -- offsets

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_started()
        if self._group_id is None:
            raise IllegalOperationError("commit needs a consumer with a group_id")
        await asyncio.sleep(0)
        self._check_started()
        group = self._group
        assert group is not None
        if self._member_id not in group.members or self._generation != group.generation:
            raise CommitFailedError(
                f"group {self._group_id!r} rebalanced: member {self._member_id} is not in "
                f"generation {group.generation}"
            )
        for tp, offset in offsets.items():
            self._cluster._partition(tp)
            if type(offset) is not int or offset < 0:
                raise OffsetOutOfRangeError(f"cannot commit offset {offset!r} for {tp}")
        group.committed.update(offsets)

    async def committed(self, partition: TopicPartition) -> int | None:
        self._check_not_stopped()
        if self._group_id is None:
            raise IllegalOperationError("committed needs a consumer with a group_id")
        await asyncio.sleep(0)
        self._check_not_stopped()
        return self._cluster.committed(self._group_id, partition)

    async def position(self, partition: TopicPartition) -> int:
        self._check_not_stopped()
        await asyncio.sleep(0)
        self._check_assigned(partition)
        position = self._positions[partition]
        if position is None:
            raise NoOffsetForPartitionError(
                f'no committed offset for {partition} and auto_offset_reset="none"'
            )
        end = len(self._partitions[partition].log)
        if not 0 <= position <= end:
            position = self._reset_out_of_range(partition, position, end)
        return position

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_assigned(partition)
        if type(offset) is not int or offset < 0:
            raise OffsetOutOfRangeError(f"cannot seek {partition} to {offset!r}")
        self._positions[partition] = offset
        self._unresolved.discard(partition)
        self._wake()

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        await self._seek_all(partitions, to_end=False)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        await self._seek_all(partitions, to_end=True)

    async def _seek_all(self, partitions: Sequence[TopicPartition], *, to_end: bool) -> None:
        self._check_not_stopped()
        await asyncio.sleep(0)
        for tp in partitions:
            self._check_assigned(tp)
        for tp in partitions or sorted(self._assignment):
            self._positions[tp] = len(self._partitions[tp].log) if to_end else 0
            self._unresolved.discard(tp)
        self._wake()

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self._check_not_stopped()
        await asyncio.sleep(0)
        self._check_not_stopped()
        for tp in partitions:
            self._cluster._partition(tp)
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_not_stopped()
        await asyncio.sleep(0)
        self._check_not_stopped()
        return {tp: len(self._cluster._partition(tp).log) for tp in partitions}

    # -- local state

    def assignment(self) -> frozenset[TopicPartition]:
        self._check_not_stopped()
        return self._assignment

    def highwater(self, partition: TopicPartition) -> int | None:
        self._check_not_stopped()
        return self._highwater.get(partition)

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._check_assigned(tp)
        self._paused.update(partitions)
        self._refresh_fetchable()

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._check_assigned(tp)
        self._paused.difference_update(partitions)
        self._refresh_fetchable()
        self._wake()

    def paused(self) -> frozenset[TopicPartition]:
        self._check_not_stopped()
        return frozenset(self._paused)

    # -- guards

    def _check_not_stopped(self) -> None:
        if self._state == _STOPPED:
            raise ConsumerStoppedError("the consumer is stopped")

    def _check_started(self) -> None:
        if self._state != _STARTED:
            self._check_not_stopped()
            raise IllegalStateError("the consumer is not started")

    def _check_assigned(self, partition: TopicPartition) -> None:
        self._check_not_stopped()
        if partition not in self._assignment:
            raise IllegalStateError(f"{partition} is not assigned to this consumer")


class _Delivered:
    """An acknowledgement that is already in: awaiting it returns the metadata at once.

    The metadata is built on first await: most sends are never awaited one
    by one, and building it costs as much as the append.
    """

    __slots__ = ("_metadata", "_offset", "_partition", "_timestamp", "_topic")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._timestamp = timestamp
        self._metadata: RecordMetadata | None = None

    def result(self) -> RecordMetadata:
        if self._metadata is None:
            self._metadata = RecordMetadata(
                self._topic, self._partition, self._offset, self._timestamp, CREATE_TIME
            )
        return self._metadata

    def done(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.result()
        yield  # a generator that never suspends: the record is already in the log

    def __repr__(self) -> str:
        return f"<delivered {self._topic}[{self._partition}]@{self._offset}>"


class MemoryProducer:
    def __init__(self, cluster: MemoryCluster, **options: Any) -> None:
        check_options("memory producer", options, PRODUCER_OPTIONS)
        self._cluster = cluster
        self._key_serializer: Callable[[Any], bytes | None] | None = options.get("key_serializer")
        self._value_serializer: Callable[[Any], bytes | None] | None = options.get(
            "value_serializer"
        )
        self._partitioner: Callable[..., int] | None = options.get("partitioner")
        self._max_request_size: int = options.get("max_request_size") or DEFAULT_MAX_REQUEST_SIZE
        # Below this many key and value bytes no record can reach max_request_size.
        self._size_check_from = self._max_request_size - 2 * _BATCH_HEADER_SIZE - 64
        self._state = _NEW
        self._sends = 0

    def __repr__(self) -> str:
        return f"MemoryProducer({self._state})"

    async def start(self) -> None:
        self._check_not_closed()
        await asyncio.sleep(0)
        self._check_not_closed()
        self._state = _STARTED

    async def stop(self) -> None:
        if self._state == _STOPPED:
            return
        await asyncio.sleep(0)
        self._state = _STOPPED

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> _Delivered:
        if self._state != _STARTED:
            self._check_not_closed()
            raise IllegalStateError("the producer is not started")
        self._sends += 1
        if not self._sends % _SEND_CHECKPOINT_EVERY:
            await asyncio.sleep(0)
            self._check_not_closed()
        if self._key_serializer is not None:
            key = self._key_serializer(key)
        if self._value_serializer is not None:
            value = self._value_serializer(value)
        if type(value) is not bytes:
            value = _as_bytes("value", value)
        if type(key) is not bytes:
            key = _as_bytes("key", key)
        if headers or (
            (0 if key is None else len(key)) + (0 if value is None else len(value))
            > self._size_check_from
        ):
            size = _record_size(key, value, headers)
            if size > self._max_request_size:
                raise RecordTooLargeError(
                    f"the record is {size} bytes serialized, more than "
                    f"max_request_size={self._max_request_size}"
                )
        cluster = self._cluster
        partitions = cluster._topics.get(topic) or cluster._partitions(topic)
        if partition is None:
            if self._partitioner is not None:
                numbers = list(range(len(partitions)))
                partition = self._partitioner(key, numbers, numbers)
            else:
                partition = cluster._default_partition(key, len(partitions))
        offset, timestamp = cluster._append(
            topic, partitions, partition, key, value, timestamp_ms, headers
        )
        return _Delivered(topic, partition, offset, timestamp)

    async def flush(self) -> None:
        self._check_not_closed()
        await asyncio.sleep(0)

    async def partitions_for(self, topic: str) -> frozenset[int]:
        self._check_not_closed()
        await asyncio.sleep(0)
        self._check_not_closed()
        return frozenset(range(len(self._cluster._partitions(topic))))

    def _check_not_closed(self) -> None:
        if self._state == _STOPPED:
            raise ProducerClosedError("the producer is stopped")
