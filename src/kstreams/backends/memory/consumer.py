"""The memory consumer: a group member that serves rebalances inside ``getmany``.

Members serve rebalances inside ``getmany`` (and ``start``), the way a Kafka
consumer serves them in ``poll``. Every fetch hands out fresh record
objects, built from the log's entries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from kstreams.backends.memory.cluster import MemoryCluster
from kstreams.backends.memory.group import Group, strategy_names
from kstreams.backends.memory.log import PartitionLog, resolve, wake
from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from kstreams.options import CONSUMER_OPTIONS, check_options
from kstreams.ports import GroupMetadata, RebalanceCallbacks, RecordBatch
from kstreams.records import TopicPartition

__all__ = ["MemoryConsumer"]

logger = logging.getLogger("kstreams.backends.memory")

DEFAULT_MAX_POLL_RECORDS: Final = 500
DEFAULT_SESSION_TIMEOUT_MS: Final = 10_000
ISOLATION_LEVELS: Final = ("read_uncommitted", "read_committed")

_NEW, _STARTED, _STOPPED = "new", "started", "stopped"


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
        self._isolation_level: str = options.get("isolation_level", "read_uncommitted")
        if self._isolation_level not in ISOLATION_LEVELS:
            raise ConfigError(
                f"isolation_level must be one of {ISOLATION_LEVELS}, got {self._isolation_level!r}"
            )
        self._read_committed = self._isolation_level == "read_committed"
        self._max_poll_records: int = options.get("max_poll_records") or DEFAULT_MAX_POLL_RECORDS
        timeout_ms = options.get("rebalance_timeout_ms") or options.get(
            "session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS
        )
        self._rebalance_timeout: float = timeout_ms / 1000
        self._strategies = strategy_names(
            options.get("partition_assignment_strategy", "roundrobin")
        )

        self._topics: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._listener: RebalanceCallbacks | None = None

        self._state = _NEW
        self._group: Group | None = None
        self._member_id = ""
        self._generation: int | None = None
        self._serving = False
        self._polling = 0
        self._wakers: set[asyncio.Future[None]] = set()

        self._assignment: frozenset[TopicPartition] = frozenset()
        self._partitions: dict[TopicPartition, PartitionLog] = {}
        self._positions: dict[TopicPartition, int | None] = {}
        self._unresolved: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._fetchable: list[tuple[TopicPartition, PartitionLog]] = []
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
        wake(list(self._wakers))

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
        committed = self._read_committed
        for tp, partition in fetchable[first:] + fetchable[:first]:
            end = partition.end
            highwater[tp] = end
            position = positions[tp]
            assert position is not None
            if not 0 <= position <= end:
                position = self._reset_out_of_range(tp, position, end)
            if position == end:
                continue
            records, positions[tp] = partition.read(position, limit, committed=committed)
            if records:
                batch[tp] = records
                limit -= len(records)
                if not limit:
                    break
        return batch

    def _reset_out_of_range(self, tp: TopicPartition, position: int, end: int) -> int:
        if self._auto_offset_reset == "none":
            raise OffsetOutOfRangeError(f"position {position} of {tp} is outside [0, {end}]")
        position = 0 if self._auto_offset_reset == "earliest" else self._end(self._partitions[tp])
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
        self, wake_at: float, fetchable: Sequence[tuple[TopicPartition, PartitionLog]]
    ) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakers.add(waiter)
        for _, partition in fetchable:
            partition.waiters.add(waiter)
        timer = loop.call_later(max(wake_at - time.monotonic(), 0), resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._wakers.discard(waiter)
            for _, partition in fetchable:
                partition.waiters.discard(waiter)

    def _wake(self) -> None:
        if self._wakers:
            wake(list(self._wakers))

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
        # Before its first assignment a member has nothing to revoke, and real
        # clients do not report an empty revocation then.
        if self._listener is not None and self._generation is not None:
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
                    position = self._end(partition)
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
        end = self._partitions[partition].end
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
            self._positions[tp] = self._end(self._partitions[tp]) if to_end else 0
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
        return {tp: self._end(self._cluster._partition(tp)) for tp in partitions}

    def _end(self, partition: PartitionLog) -> int:
        """Where "the end" is for this consumer: the last stable offset under read_committed."""
        return partition.last_stable() if self._read_committed else partition.end

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

    def connected(self) -> bool:
        return True

    def group_metadata(self) -> GroupMetadata:
        self._check_not_stopped()
        if self._group_id is None:
            raise IllegalOperationError("group_metadata needs a consumer with a group_id")
        generation = -1 if self._generation is None else self._generation
        return GroupMetadata(self._group_id, generation, self._member_id)

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
