"""The in-memory broker at the port level: logs, partitioning, groups, offsets, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from kstreams.backends.memory import (
    MemoryCluster,
    MemoryConsumer,
    MemoryProducer,
    default_cluster,
    reset_default_cluster,
)
from kstreams.backends.murmur2 import murmur2, partition_for_key
from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    NoOffsetForPartitionError,
    ProducerClosedError,
    RecordTooLargeError,
    UnknownOptionError,
    UnknownTopicOrPartitionError,
)
from kstreams.ports import ConsumerPort, ProducerPort, RecordBatch
from kstreams.records import CREATE_TIME, ConsumerRecord, RecordMetadata, TopicPartition

# The conftest marks async tests after parametrization, which parametrized
# tests need earlier.
pytestmark = pytest.mark.anyio

Events = list[tuple[str, str, frozenset[TopicPartition]]]


class Recorder:
    """A rebalance listener that logs (member, event, partitions) into a shared list."""

    def __init__(self, name: str, events: Events) -> None:
        self.name = name
        self.events = events

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.events.append((self.name, "revoked", frozenset(revoked)))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.events.append((self.name, "assigned", frozenset(assigned)))


Factory = Callable[..., Awaitable[MemoryConsumer]]


@pytest.fixture
def cluster() -> MemoryCluster:
    return MemoryCluster()


@pytest.fixture
async def producer(cluster: MemoryCluster) -> AsyncIterator[MemoryProducer]:
    producer = MemoryProducer(cluster)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def consumers(cluster: MemoryCluster) -> AsyncIterator[Factory]:
    """Builds, subscribes and starts consumers on ``cluster``; stops them all at the end."""
    async with AsyncExitStack() as stack:

        async def make(
            topics: Iterable[str] = (),
            *,
            pattern: str | None = None,
            listener: Any = None,
            group_id: str | None = "g",
            **options: Any,
        ) -> MemoryConsumer:
            consumer = MemoryConsumer(cluster, group_id=group_id, **options)
            consumer.subscribe(list(topics), pattern=pattern, listener=listener)
            stack.push_async_callback(consumer.stop)
            await consumer.start()
            return consumer

        yield make


async def settle(
    members: list[MemoryConsumer], expected: set[TopicPartition]
) -> dict[TopicPartition, list[int]]:
    """Drive every member's getmany until their assignments split ``expected`` between them.

    Returns the offsets the members read meanwhile, per partition.
    """
    read: dict[TopicPartition, list[int]] = {}
    deadline = time.monotonic() + 10
    while True:
        for batch in await asyncio.gather(*(m.getmany(timeout_ms=10) for m in members)):
            for tp, records in batch.items():
                read.setdefault(tp, []).extend(r.offset for r in records)
        held = [m.assignment() for m in members]
        if set().union(*held) == expected and sum(map(len, held)) == len(expected):
            return read
        assert time.monotonic() < deadline, f"group did not settle: {held}"


def tps(topic: str, *partitions: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in partitions}


async def call_maybe_async(call: Callable[[], Any]) -> Any:
    result = call()
    return await result if asyncio.iscoroutine(result) else result


def flat(batch: RecordBatch) -> list[ConsumerRecord[bytes | None, bytes | None]]:
    return [record for records in batch.values() for record in records]


async def test_adapters_satisfy_the_ports(cluster: MemoryCluster) -> None:
    """MemoryConsumer and MemoryProducer type-check as ConsumerPort and ProducerPort."""
    consumer: ConsumerPort = MemoryConsumer(cluster, group_id=None)
    producer: ProducerPort = MemoryProducer(cluster)
    assert consumer.assignment() == frozenset()
    await producer.stop()


async def test_records_round_trip_offsets_timestamps_and_headers(
    cluster: MemoryCluster, producer: MemoryProducer
) -> None:
    """Appends get offsets from 0, ms CREATE_TIME timestamps, sizes and tuple headers."""
    before = int(time.time() * 1000)
    first = await (await producer.send("t", b"v0", key=b"k", headers=[("h", b"1"), ("h", b"2")]))
    second = await (await producer.send("t", None, key=b"kk", timestamp_ms=42))
    third = await (await producer.send("t", b"v2"))
    after = int(time.time() * 1000)

    assert [first.offset, second.offset, third.offset] == [0, 1, 2]
    assert before <= first.timestamp <= after
    assert second == RecordMetadata("t", 0, 1, 42, CREATE_TIME)
    records = cluster.records(TopicPartition("t", 0))
    assert records[0] == ConsumerRecord(
        topic="t",
        partition=0,
        offset=0,
        timestamp=first.timestamp,
        timestamp_type=CREATE_TIME,
        key=b"k",
        value=b"v0",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=(("h", b"1"), ("h", b"2")),
    )
    assert isinstance(records[0].headers, tuple)
    assert (records[1].value, records[1].serialized_value_size, records[1].timestamp) == (
        None,
        -1,
        42,
    )
    assert (records[2].key, records[2].serialized_key_size, records[2].headers) == (None, -1, ())

    consumer = MemoryConsumer(cluster, group_id="g", auto_offset_reset="earliest")
    consumer.subscribe(["t"])
    await consumer.start()
    batch = await consumer.getmany(timeout_ms=1000)
    await consumer.stop()
    assert flat(batch) == list(records)
    assert cluster.records(TopicPartition("t", 0)) == records, "reading removed records"


async def test_murmur2_matches_kafka_and_aiokafka() -> None:
    """murmur2 equals Java Kafka's known vectors and aiokafka's function on random keys."""
    from aiokafka.partitioner import DefaultPartitioner
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    def signed(h: int) -> int:
        return h - (1 << 32) if h & 0x80000000 else h

    # From Kafka's UtilsTest.testMurmur2.
    assert signed(murmur2(b"21")) == -973932308
    assert signed(murmur2(b"foobar")) == -790332482
    assert signed(murmur2(b"a-little-bit-long-string")) == -985981536
    assert signed(murmur2(b"a-little-bit-longer-string")) == -1486304829
    assert signed(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")) == -58897971
    assert signed(murmur2(b"abc")) == 479470107
    partitioner = DefaultPartitioner()
    for length in range(0, 41):
        for _ in range(25):
            key = os.urandom(length)
            assert murmur2(key) == aiokafka_murmur2(key)
            for count in (1, 3, 7, 12):
                expected = partitioner(key, list(range(count)), list(range(count)))
                assert partition_for_key(key, count) == expected


async def test_keyed_records_go_to_the_murmur2_partition(
    cluster: MemoryCluster, producer: MemoryProducer
) -> None:
    """Without an explicit partition a keyed record lands where aiokafka would put it."""
    from aiokafka.partitioner import DefaultPartitioner

    cluster.create_topic("keyed", partitions=6)
    partitioner = DefaultPartitioner()
    for i in range(60):
        key = f"user-{i}".encode()
        metadata = await (await producer.send("keyed", b"v", key=key))
        assert metadata.partition == partitioner(key, list(range(6)), list(range(6)))


async def test_unkeyed_records_spread_over_partitions(
    cluster: MemoryCluster, producer: MemoryProducer
) -> None:
    """Unkeyed records go to random partitions, reaching every partition of the topic."""
    cluster.create_topic("spread", partitions=4)
    for _ in range(400):
        await producer.send("spread", b"v")
    ends = [cluster.end_offset(TopicPartition("spread", p)) for p in range(4)]
    assert sum(ends) == 400
    assert min(ends) > 0


async def test_auto_create_and_explicit_partitions(producer: MemoryProducer) -> None:
    """Topics auto-create with the default count; create_topic, partitions_for, range errors."""
    cluster = MemoryCluster(default_partitions=3)
    producer = MemoryProducer(cluster)
    await producer.start()
    assert await producer.partitions_for("auto") == frozenset({0, 1, 2})
    await producer.send("auto2", b"v", partition=2)
    assert cluster.topics() == frozenset({"auto", "auto2"})

    cluster.create_topic("explicit", partitions=5)
    cluster.create_topic("explicit", partitions=5)
    with pytest.raises(ConfigError):
        cluster.create_topic("explicit", partitions=2)
    assert cluster.partitions_for("explicit") == frozenset(range(5))
    metadata = await (await producer.send("explicit", b"v", partition=4))
    assert (metadata.partition, metadata.offset) == (4, 0)
    with pytest.raises(UnknownTopicOrPartitionError):
        await producer.send("explicit", b"v", partition=5)
    with pytest.raises(UnknownTopicOrPartitionError):
        cluster.end_offset(TopicPartition("missing", 0))
    await producer.stop()


async def test_serializers_and_max_request_size(cluster: MemoryCluster) -> None:
    """key/value serializers apply before the append; a record over max_request_size is refused."""
    producer = MemoryProducer(
        cluster,
        key_serializer=lambda k: None if k is None else k.encode(),
        value_serializer=lambda v: repr(v).encode(),
        max_request_size=1000,
        acks="all",
        linger_ms=5,
    )
    await producer.start()
    await producer.send("s", {"a": 1}, key="k")
    record = cluster.records(TopicPartition("s", 0))[0]
    assert (record.key, record.value) == (b"k", b"{'a': 1}")
    with pytest.raises(RecordTooLargeError):
        await producer.send("s", "x" * 1000)
    assert cluster.end_offset(TopicPartition("s", 0)) == 1
    await producer.stop()
    with pytest.raises(UnknownOptionError):
        MemoryProducer(cluster, lnger_ms=5)


async def test_two_members_split_a_three_partition_topic(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """Two members of one group hold disjoint shares that together cover the topic."""
    cluster.create_topic("t3", partitions=3)
    first = await consumers(["t3"])
    assert first.assignment() == frozenset(tps("t3", 0, 1, 2))
    second = await consumers(["t3"])
    await settle([first, second], tps("t3", 0, 1, 2))
    sizes = sorted(len(m.assignment()) for m in (first, second))
    assert sizes == [1, 2]
    members = cluster.members("g")
    assert sorted(members.values(), key=len) == sorted(
        [first.assignment(), second.assignment()], key=len
    )


async def test_range_strategy_given_as_aiokafka_class(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """An aiokafka assignor class picks the strategy by its name: range gives contiguous blocks."""
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    cluster.create_topic("r", partitions=5)
    options = {"partition_assignment_strategy": (RangePartitionAssignor,)}
    first = await consumers(["r"], **options)
    second = await consumers(["r"], **options)
    await settle([first, second], tps("r", 0, 1, 2, 3, 4))
    # Members sort by id, and ids grow in join order.
    assert first.assignment() == frozenset(tps("r", 0, 1, 2))
    assert second.assignment() == frozenset(tps("r", 3, 4))
    with pytest.raises(ConfigError):
        MemoryConsumer(cluster, group_id="g", partition_assignment_strategy="sticky")


async def test_start_returns_assigned_when_the_other_members_are_polling(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """A member joining a group whose members are in getmany is assigned when start returns."""
    cluster.create_topic("p", partitions=2)
    first = await consumers(["p"])
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            await first.getmany(timeout_ms=20)

    task = asyncio.create_task(poll())
    second = await consumers(["p"])
    assert len(second.assignment()) == 1
    stop.set()
    await task


async def test_every_member_revokes_before_any_is_assigned(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """Eager rebalance: all revocations of a rebalance happen before any assignment; the
    first join reports no (empty) revocation, as real clients do not."""
    cluster.create_topic("o", partitions=4)
    events: Events = []
    first = await consumers(["o"], listener=Recorder("a", events))
    assert events == [("a", "assigned", frozenset(tps("o", 0, 1, 2, 3)))]
    events.clear()
    second = await consumers(["o"], listener=Recorder("b", events))
    third = await consumers(["o"], listener=Recorder("c", events))
    await settle([first, second, third], tps("o", 0, 1, 2, 3))

    kinds = [kind for _, kind, _ in events]
    assert kinds.count("assigned") == 3
    last_revoke = max(i for i, kind in enumerate(kinds) if kind == "revoked")
    first_assign = kinds.index("assigned")
    assert last_revoke < first_assign, events
    assert ("a", "revoked", frozenset(tps("o", 0, 1, 2, 3))) in events


async def test_a_member_leaving_gives_the_other_everything(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """When one of two members stops, the other revokes its share and gets every partition."""
    cluster.create_topic("l", partitions=3)
    events: Events = []
    first = await consumers(["l"], listener=Recorder("a", events))
    second = await consumers(["l"])
    await settle([first, second], tps("l", 0, 1, 2))
    share = first.assignment()
    events.clear()
    await second.stop()
    await first.getmany(timeout_ms=0)
    assert first.assignment() == frozenset(tps("l", 0, 1, 2))
    assert events == [("a", "revoked", share), ("a", "assigned", frozenset(tps("l", 0, 1, 2)))]


class CommitOnRevoke:
    """Commits the consumer's positions of revoked partitions, as the core does."""

    def __init__(self) -> None:
        self.consumer: MemoryConsumer | None = None

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        assert self.consumer is not None
        if revoked:
            await self.consumer.commit({tp: await self.consumer.position(tp) for tp in revoked})

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        assert self.consumer is not None
        for tp in assigned:
            await self.consumer.position(tp)


async def test_commits_in_revoke_are_seen_by_the_next_owner(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """Offsets committed in on_partitions_revoked are where the partition's next owner starts."""
    cluster.create_topic("c", partitions=2)
    for p in (0, 1):
        for i in range(5):
            cluster.append("c", b"%d" % i, partition=p)
    listener = CommitOnRevoke()
    first = MemoryConsumer(cluster, group_id="g", auto_offset_reset="earliest")
    listener.consumer = first
    first.subscribe(["c"], listener=listener)
    await first.start()
    batch = await first.getmany(timeout_ms=1000, max_records=6)
    read = {tp: len(records) for tp, records in batch.items()}
    assert sum(read.values()) == 6

    second = await consumers(["c"], auto_offset_reset="earliest")
    read_meanwhile = await settle([first, second], tps("c", 0, 1))
    moved = next(iter(second.assignment()))
    assert cluster.committed("g", moved) == read[moved]
    assert await second.committed(moved) == read[moved]
    assert read_meanwhile[moved] == list(range(read[moved], 5))
    assert await second.position(moved) == 5
    await first.stop()


async def test_a_stuck_member_is_dropped_after_its_rebalance_timeout(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """A member that never polls is removed after rebalance_timeout_ms; its commits then fail."""
    cluster.create_topic("s", partitions=2)
    cluster.append("s", b"x", partition=0)
    cluster.append("s", b"y", partition=1)
    events: Events = []
    stuck = await consumers(
        ["s"],
        listener=Recorder("stuck", events),
        rebalance_timeout_ms=300,
        session_timeout_ms=60_000,
    )
    assert stuck.assignment() == frozenset(tps("s", 0, 1))
    other = await consumers(["s"], auto_offset_reset="earliest")
    assert other.assignment() == frozenset()

    started = time.monotonic()
    batch = await other.getmany(timeout_ms=20_000)
    waited = time.monotonic() - started
    assert 0.25 <= waited < 10
    assert other.assignment() == frozenset(tps("s", 0, 1))
    assert [r.value for r in flat(batch)] in ([b"x", b"y"], [b"y", b"x"])

    with pytest.raises(CommitFailedError):
        await stuck.commit({TopicPartition("s", 0): 1})
    # Coming back, it revokes what it held and rejoins as a new member.
    await stuck.getmany(timeout_ms=0)
    assert events[-1] == ("stuck", "revoked", frozenset(tps("s", 0, 1)))
    assert stuck.assignment() == frozenset()


async def test_commit_without_group_and_group_less_consumer_gets_everything(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """group_id=None: all partitions of the subscription, and commit/committed are illegal."""
    cluster.create_topic("n", partitions=3)
    alone = await consumers(["n"], group_id=None)
    also = await consumers(["n"], group_id=None)
    assert alone.assignment() == also.assignment() == frozenset(tps("n", 0, 1, 2))
    with pytest.raises(IllegalOperationError):
        await alone.commit({TopicPartition("n", 0): 1})
    with pytest.raises(IllegalOperationError):
        await alone.committed(TopicPartition("n", 0))


@pytest.mark.parametrize(
    ("reset", "expected"), [("earliest", [b"old", b"new"]), ("latest", [b"new"])]
)
async def test_auto_offset_reset_earliest_and_latest(
    cluster: MemoryCluster, consumers: Factory, reset: str, expected: list[bytes]
) -> None:
    """Without a commit, earliest starts at the log start and latest at the log end."""
    cluster.append("a", b"old")
    consumer = await consumers(["a"], auto_offset_reset=reset)
    cluster.append("a", b"new")
    batch = await consumer.getmany(timeout_ms=1000)
    assert [r.value for r in flat(batch)] == expected


async def test_auto_offset_reset_none_raises_until_a_seek(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """auto_offset_reset="none" without a commit raises NoOffsetForPartitionError; seek fixes it."""
    cluster.append("z", b"0")
    cluster.append("z", b"1")
    consumer = await consumers(["z"], auto_offset_reset="none")
    tp = TopicPartition("z", 0)
    with pytest.raises(NoOffsetForPartitionError):
        await consumer.getmany(timeout_ms=0)
    with pytest.raises(NoOffsetForPartitionError):
        await consumer.position(tp)
    consumer.seek(tp, 1)
    batch = await consumer.getmany(timeout_ms=1000)
    assert [r.value for r in flat(batch)] == [b"1"]


async def test_committed_offset_wins_over_auto_offset_reset(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """A group's committed offset is where a newly assigned member starts, whatever the reset."""
    for i in range(4):
        cluster.append("w", b"%d" % i)
    first = await consumers(["w"], auto_offset_reset="none")
    first.seek(TopicPartition("w", 0), 0)
    await first.getmany(timeout_ms=1000, max_records=3)
    await first.commit({TopicPartition("w", 0): 3})
    await first.stop()
    second = await consumers(["w"], auto_offset_reset="latest")
    batch = await second.getmany(timeout_ms=1000)
    assert [r.value for r in flat(batch)] == [b"3"]


async def test_seek_position_pause_resume_and_highwater(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """seek moves the position, pause holds records back until resume, highwater is the log end."""
    cluster.create_topic("q", partitions=2)
    for i in range(3):
        cluster.append("q", b"a%d" % i, partition=0)
        cluster.append("q", b"b%d" % i, partition=1)
    consumer = await consumers(["q"], auto_offset_reset="earliest")
    p0, p1 = TopicPartition("q", 0), TopicPartition("q", 1)
    assert consumer.highwater(p0) is None
    consumer.pause(p1)
    assert consumer.paused() == frozenset({p1})
    batch = await consumer.getmany(timeout_ms=50)
    assert list(batch) == [p0]
    assert await consumer.position(p0) == 3
    assert consumer.highwater(p0) == 3
    assert await consumer.position(p1) == 0

    consumer.seek(p0, 1)
    consumer.resume(p1)
    assert consumer.paused() == frozenset()
    batch = await consumer.getmany(timeout_ms=50)
    assert [r.value for r in batch[p0]] == [b"a1", b"a2"]
    assert [r.value for r in batch[p1]] == [b"b0", b"b1", b"b2"]

    await consumer.seek_to_beginning(p1)
    assert await consumer.position(p1) == 0
    await consumer.seek_to_end()
    assert [await consumer.position(tp) for tp in (p0, p1)] == [3, 3]
    assert await consumer.beginning_offsets([p0, p1]) == {p0: 0, p1: 0}
    assert await consumer.end_offsets([p0, p1]) == {p0: 3, p1: 3}

    other = TopicPartition("elsewhere", 0)
    cluster.create_topic("elsewhere")
    with pytest.raises(IllegalStateError):
        consumer.seek(other, 0)
    with pytest.raises(IllegalStateError):
        await consumer.position(other)
    with pytest.raises(IllegalStateError):
        consumer.pause(other)


async def test_regex_subscription_picks_up_a_new_topic(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """A pattern subscriber is rebalanced onto a matching topic created after it started."""
    cluster.create_topic("orders-eu")
    cluster.create_topic("payments")
    events: Events = []
    consumer = await consumers(
        pattern=r"orders-.*", listener=Recorder("a", events), auto_offset_reset="earliest"
    )
    assert consumer.assignment() == frozenset(tps("orders-eu", 0))

    waiting = asyncio.create_task(consumer.getmany(timeout_ms=5000))
    await asyncio.sleep(0.01)
    cluster.create_topic("orders-us", partitions=2)
    cluster.append("orders-us", b"hello", partition=1)
    batch = await waiting
    if not batch:
        batch = await consumer.getmany(timeout_ms=1000)
    assert consumer.assignment() == frozenset(tps("orders-eu", 0) | tps("orders-us", 0, 1))
    assert events[-2][1] == "revoked"
    assert [r.value for r in flat(batch)] == [b"hello"]
    cluster.create_topic("unrelated")
    assert consumer.assignment() == frozenset(tps("orders-eu", 0) | tps("orders-us", 0, 1))


async def test_getmany_honours_max_records_fairly(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """max_records caps a batch, and successive small batches visit every partition."""
    cluster.create_topic("m", partitions=3)
    for p in range(3):
        for i in range(20):
            cluster.append("m", b"%d" % i, partition=p)
    consumer = await consumers(["m"], auto_offset_reset="earliest", max_poll_records=7)
    assert len(flat(await consumer.getmany(timeout_ms=0))) == 7
    seen: set[int] = set()
    for _ in range(3):
        batch = await consumer.getmany(timeout_ms=0, max_records=5)
        assert len(flat(batch)) == 5
        seen.update(tp.partition for tp in batch)
    assert seen == {0, 1, 2}
    for tp, records in (await consumer.getmany(timeout_ms=0, max_records=100)).items():
        offsets = [r.offset for r in records]
        assert offsets == list(range(offsets[0], 20)), tp


async def test_getmany_waits_without_busy_looping_and_wakes_on_append(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """An empty getmany sleeps until its timeout at little CPU, and returns early on a record."""
    consumer = await consumers(["idle"])
    cpu, wall = time.process_time(), time.monotonic()
    assert await consumer.getmany(timeout_ms=300) == {}
    assert time.monotonic() - wall >= 0.29
    assert time.process_time() - cpu < 0.15

    waiting = asyncio.create_task(consumer.getmany(timeout_ms=20_000))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    wall = time.monotonic()
    cluster.append("idle", b"wake")
    batch = await waiting
    assert time.monotonic() - wall < 2
    assert [r.value for r in flat(batch)] == [b"wake"]


async def test_every_call_after_stop_raises(cluster: MemoryCluster, consumers: Factory) -> None:
    """After stop every consumer call raises ConsumerStoppedError, producer ProducerClosedError."""
    consumer = await consumers(["x"])
    tp = TopicPartition("x", 0)
    waiting = asyncio.create_task(consumer.getmany(timeout_ms=20_000))
    await asyncio.sleep(0.01)
    await consumer.stop()
    await consumer.stop()
    with pytest.raises(ConsumerStoppedError):
        await waiting
    calls: list[Callable[[], Any]] = [
        lambda: consumer.getmany(timeout_ms=0),
        lambda: consumer.commit({tp: 0}),
        lambda: consumer.committed(tp),
        lambda: consumer.position(tp),
        lambda: consumer.seek_to_beginning(),
        lambda: consumer.seek_to_end(),
        lambda: consumer.beginning_offsets([tp]),
        lambda: consumer.end_offsets([tp]),
        consumer.start,
        lambda: consumer.seek(tp, 0),
        consumer.assignment,
        lambda: consumer.highwater(tp),
        lambda: consumer.pause(tp),
        lambda: consumer.resume(tp),
        consumer.paused,
        lambda: consumer.subscribe(["x"]),
    ]
    for call in calls:
        with pytest.raises(ConsumerStoppedError):
            await call_maybe_async(call)

    producer = MemoryProducer(cluster)
    await producer.start()
    await producer.stop()
    await producer.stop()
    for producer_call in (
        lambda: producer.send("x", b"v"),
        producer.flush,
        lambda: producer.partitions_for("x"),
        producer.start,
    ):
        with pytest.raises(ProducerClosedError):
            await producer_call()


async def test_listener_errors_are_logged_and_the_rebalance_goes_on(
    cluster: MemoryCluster, consumers: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged, as aiokafka does, and the member is still assigned."""

    class Broken:
        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            raise RuntimeError("revoke boom")

        async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
            raise RuntimeError("assign boom")

    cluster.create_topic("b", partitions=2)
    with caplog.at_level(logging.ERROR, logger="kstreams.backends.memory"):
        consumer = await consumers(["b"], listener=Broken())
        assert consumer.assignment() == frozenset(tps("b", 0, 1))
        assert "on_partitions_assigned failed" in caplog.text
        # A second member makes the first revoke (a first join revokes nothing).
        other = await consumers(["b"])
        await settle([consumer, other], tps("b", 0, 1))
    assert len(consumer.assignment()) == 1
    assert "on_partitions_revoked failed" in caplog.text


async def test_two_clusters_are_isolated(producer: MemoryProducer, cluster: MemoryCluster) -> None:
    """Records, topics and commits of one cluster are invisible to another."""
    await producer.send("iso", b"here")
    other = MemoryCluster()
    assert other.topics() == frozenset()
    consumer = MemoryConsumer(other, group_id="g", auto_offset_reset="earliest")
    consumer.subscribe(["iso"])
    await consumer.start()
    assert await consumer.getmany(timeout_ms=50) == {}
    await consumer.commit({TopicPartition("iso", 0): 0})
    await consumer.stop()
    assert cluster.committed("g", TopicPartition("iso", 0)) is None
    assert other.committed("g", TopicPartition("iso", 0)) == 0
    assert cluster.end_offset(TopicPartition("iso", 0)) == 1


async def test_default_cluster_is_shared_until_reset() -> None:
    """default_cluster() returns one cluster until reset_default_cluster() replaces it."""
    shared = default_cluster()
    assert default_cluster() is shared
    fresh = reset_default_cluster()
    assert fresh is not shared
    assert default_cluster() is fresh
    given = MemoryCluster()
    assert reset_default_cluster(given) is given
    assert default_cluster() is given


async def test_send_returns_an_awaitable_already_resolved(
    cluster: MemoryCluster, producer: MemoryProducer
) -> None:
    """Many sends can be enqueued before any acknowledgement is awaited, then gathered."""
    pending = [await producer.send("g", b"%d" % i) for i in range(100)]
    assert cluster.end_offset(TopicPartition("g", 0)) == 100
    results = await asyncio.gather(*pending)
    assert [m.offset for m in results] == list(range(100))
    await producer.flush()


async def test_commit_fails_until_the_member_takes_the_new_generation(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """A commit after the group moved to a new generation fails until getmany picks it up."""
    cluster.create_topic("gen", partitions=3)
    first = await consumers(["gen"])
    second = await consumers(["gen"])
    await settle([first, second], tps("gen", 0, 1, 2))
    held = next(iter(first.assignment()))
    await first.commit({held: 0})

    third = await consumers(["gen"])
    assert third.assignment() == frozenset()
    assert await first.getmany(timeout_ms=0) == {}
    # Revoked and rejoined, but the barrier still waits for the second member.
    assert first.assignment() == frozenset()
    await first.commit({held: 0})
    await second.getmany(timeout_ms=0)
    with pytest.raises(CommitFailedError):
        await first.commit({held: 0})
    await first.getmany(timeout_ms=0)
    assert first.assignment()
    await first.commit({held: 0})
    await settle([first, second, third], tps("gen", 0, 1, 2))


async def test_subscribe_after_start_rebalances_onto_the_new_topics(
    cluster: MemoryCluster, consumers: Factory
) -> None:
    """Changing the subscription of a started member revokes the old topics and assigns the new."""
    events: Events = []
    consumer = await consumers(["before"], listener=Recorder("a", events))
    consumer.subscribe(["after"], listener=Recorder("a", events))
    await consumer.getmany(timeout_ms=0)
    assert consumer.assignment() == frozenset(tps("after", 0))
    assert events[-2:] == [
        ("a", "revoked", frozenset(tps("before", 0))),
        ("a", "assigned", frozenset(tps("after", 0))),
    ]
