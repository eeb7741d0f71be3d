"""Ordered concurrency: concurrency=N, in order per partition or per key, committing only the
contiguous handled prefix."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest

from kstreams import (
    ConsumerRecord,
    GetMany,
    Middleware,
    Stream,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.dead_letter import DeadLetterMiddleware
from kstreams.exceptions import StreamError
from tests.polling import eventually
from tests.recording import RecordingBackend


def keyed(partitions: int, keys: int, count: int, topic: str = "t") -> MemoryCluster:
    cluster = MemoryCluster()
    cluster.create_topic(topic, partitions=partitions)
    for i in range(count):
        cluster.append(topic, b"%d" % i, key=b"k%d" % (i % keys))
    return cluster


class InFlight:
    """Tracks records being handled: the most at once, overall and per lane."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.per_lane: dict[Any, int] = defaultdict(int)
        self.lane_overlap = False
        self.order: dict[Any, list[int]] = defaultdict(list)
        self.handled = 0
        self.done = asyncio.Event()

    async def handle(
        self, lane: Any, cr: ConsumerRecord[Any, Any], total: int, delay: float
    ) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        self.per_lane[lane] += 1
        if self.per_lane[lane] > 1:
            self.lane_overlap = True
        self.order[lane].append(cr.offset)
        try:
            await asyncio.sleep(delay)
        finally:
            self.per_lane[lane] -= 1
            self.now -= 1
        self.handled += 1
        if self.handled == total:
            self.done.set()


async def test_key_order_is_kept_under_16_way_concurrency() -> None:
    """ordering="key": records of one key are handled one at a time in offset order, different
    keys concurrently, never more than 16 at once; every offset is committed at the end."""
    total = 600
    cluster = keyed(3, 60, total)
    engine = create_engine(backend=Memory(cluster=cluster))
    flight = InFlight()
    rng = random.Random(7)

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", concurrency=16, ordering="key")
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        await flight.handle((cr.partition, cr.key), cr, total, rng.random() / 500)

    await engine.start()
    await asyncio.wait_for(flight.done.wait(), 20)
    await engine.stop()
    assert not flight.lane_overlap
    assert 1 < flight.most <= 16
    for offsets in flight.order.values():
        assert offsets == sorted(offsets)
    assert sum(len(o) for o in flight.order.values()) == total
    for p in range(3):
        tp = TopicPartition("t", p)
        assert cluster.committed("g", tp) == cluster.end_offset(tp)


async def test_partition_ordering_has_one_record_per_partition_in_flight() -> None:
    """ordering="partition": one record per partition in flight at most, partitions concurrently."""
    total = 120
    cluster = keyed(3, 60, total)
    engine = create_engine(backend=Memory(cluster=cluster))
    flight = InFlight()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", concurrency=8)
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        await flight.handle(cr.partition, cr, total, 0.001)

    await engine.start()
    await asyncio.wait_for(flight.done.wait(), 20)
    await engine.stop()
    assert not flight.lane_overlap
    assert flight.most == 3
    for offsets in flight.order.values():
        assert offsets == sorted(offsets)


async def test_a_slow_record_holds_every_commit_at_its_offset() -> None:
    """A slow record at offset k keeps every commit of its partition at <= k, however many later
    records finish; once it finishes the prefix moves past all of them."""
    cluster = MemoryCluster()
    cluster.create_topic("t")
    for i in range(40):
        cluster.append("t", b"%d" % i, key=b"k%d" % i)
    backend = RecordingBackend(Memory(cluster=cluster))
    engine = create_engine(backend=backend)
    release = asyncio.Event()
    later_done = asyncio.Event()
    handled: set[int] = set()
    commits: list[int] = []
    prefix_committed = asyncio.Event()
    tp = TopicPartition("t", 0)

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        concurrency=8,
        ordering="key",
        auto_commit_interval_ms=1,
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 5:
            await release.wait()
        handled.add(cr.offset)
        if len(handled) == 39:
            later_done.set()

    await engine.start()
    for consumer in backend.consumers:
        inner = consumer.on_commit

        def record(offsets: Mapping[TopicPartition, int], inner: Any = inner) -> None:
            commits.append(offsets[tp])
            if offsets[tp] == 5:
                prefix_committed.set()

        consumer.on_commit = record
    await asyncio.wait_for(later_done.wait(), 10)
    await asyncio.wait_for(prefix_committed.wait(), 5)
    await asyncio.sleep(0.3)  # more fetch rounds and auto-commit chances with offset 5 in flight
    assert max(commits) == 5
    release.set()
    await engine.stop()
    assert max(commits) == 40
    assert cluster.committed("g", tp) == 40


async def test_stop_mid_flight_drains_and_commits_the_prefix() -> None:
    """stop() lets the records in flight finish and commits the contiguous prefix."""
    cluster = keyed(1, 10, 10)
    engine = create_engine(backend=Memory(cluster=cluster))
    started = 0
    all_started = asyncio.Event()
    finished: list[int] = []

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", concurrency=10, ordering="key")
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal started
        started += 1
        if started == 10:
            all_started.set()
        await asyncio.sleep(0.05)
        finished.append(cr.offset)

    await engine.start()
    await asyncio.wait_for(all_started.wait(), 5)
    await asyncio.wait_for(engine.stop(), 5)
    assert sorted(finished) == list(range(10))
    assert cluster.committed("g", TopicPartition("t", 0)) == 10


async def test_a_failure_under_stop_keeps_the_failed_record_and_later_ones_uncommitted() -> None:
    """STOP: the first failing record stops the stream; records in flight finish; the commit
    stops at the failed offset."""
    cluster = keyed(1, 20, 20)
    engine = create_engine(backend=Memory(cluster=cluster))
    finished: set[int] = set()
    failed = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", concurrency=4, ordering="key")
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        await asyncio.sleep(0.001 * (cr.offset % 3))
        if cr.offset == 6:
            failed.set()
            raise ValueError("poison")
        finished.add(cr.offset)

    await engine.start()
    await asyncio.wait_for(failed.wait(), 5)
    await asyncio.wait_for(bill.stop(), 5)  # joins the stop the STOP policy began
    assert isinstance(bill.error, ValueError)
    assert set(range(6)) <= finished
    assert cluster.committed("g", TopicPartition("t", 0)) == 6
    await engine.stop()


async def test_a_failure_under_restart_skips_the_failed_record_and_loses_nothing() -> None:
    """RESTART: the failed record is skipped, every other record is handled at least once."""
    cluster = keyed(2, 20, 60)
    engine = create_engine(backend=Memory(cluster=cluster))
    finished: set[tuple[int, int]] = set()
    done = asyncio.Event()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        concurrency=4,
        ordering="key",
        error_policy=StreamErrorPolicy.RESTART,
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.partition == 0 and cr.offset == 3:
            raise ValueError("poison")
        finished.add((cr.partition, cr.offset))
        if len(finished) == 59:
            done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 10)
    await engine.stop()
    expected = {
        (p, o)
        for p in range(2)
        for o in range(cluster.end_offset(TopicPartition("t", p)))
        if (p, o) != (0, 3)
    }
    assert finished == expected
    for p in range(2):
        tp = TopicPartition("t", p)
        assert cluster.committed("g", tp) == cluster.end_offset(tp)


async def test_revoke_with_records_in_flight_commits_their_prefix_before_moving() -> None:
    """A second member joins while records are in flight: the first member's in-flight records
    finish, their prefix is committed before the partitions move, nothing is handled twice."""
    total = 300
    cluster = keyed(4, 40, total)
    handled: list[tuple[int, int]] = []
    done = asyncio.Event()
    some_handled = asyncio.Event()
    engines = []
    for member in range(2):
        engine = create_engine(backend=Memory(cluster=cluster), title=f"m{member}")

        @engine.stream(
            "t",
            group_id="g",
            auto_offset_reset="earliest",
            concurrency=8,
            ordering="key",
            max_poll_records=20,
        )
        async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
            await asyncio.sleep(0.002)
            handled.append((cr.partition, cr.offset))
            if len(handled) == 30:
                some_handled.set()
            if len(set(handled)) == total:
                done.set()

        engines.append(engine)

    await engines[0].start()
    await asyncio.wait_for(some_handled.wait(), 10)
    await engines[1].start()
    await asyncio.wait_for(done.wait(), 20)
    for engine in engines:
        await engine.stop()
    assert len(handled) == len(set(handled)) == total
    for p in range(4):
        tp = TopicPartition("t", p)
        assert cluster.committed("g", tp) == cluster.end_offset(tp)


async def test_a_record_waiting_behind_its_key_at_a_revoke_is_handled_before_the_move() -> None:
    """A revoke landing while a record waits behind a busy key: it is handled within the drain
    and committed with the rest, so the later record of another key is not handled twice."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=1)
    for key in (b"a", b"a", b"b"):  # offset 1 waits behind offset 0; offset 2 runs at once
        cluster.append("t", b"v", key=key)
    gate = asyncio.Event()
    handled: list[int] = []
    engines = []
    for member in range(2):
        engine = create_engine(backend=Memory(cluster=cluster), title=f"m{member}")

        @engine.stream(
            "t", group_id="g", auto_offset_reset="earliest", concurrency=4, ordering="key"
        )
        async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 0:
                await gate.wait()
            handled.append(cr.offset)

        engines.append((engine, bill))

    (first, first_stream), (second, _) = engines
    await first.start()
    await eventually(lambda: handled == [2])
    joining = asyncio.create_task(second.start())
    consumer = first_stream.consumer
    assert consumer is not None
    await eventually(lambda: not consumer.assignment())  # the revoke is draining
    gate.set()
    await asyncio.wait_for(joining, 10)
    await eventually(lambda: len(handled) >= 3)
    await asyncio.sleep(0.1)  # the new owner's chance to read anything left uncommitted
    await first.stop()
    await second.stop()
    assert sorted(handled) == [0, 1, 2]
    assert cluster.committed("g", TopicPartition("t", 0)) == 3


async def test_the_dead_letter_middleware_wraps_each_concurrent_record() -> None:
    """With concurrency and a deserializer, a failing record is dead-lettered as consumed."""
    cluster = keyed(1, 5, 10)
    cluster.create_topic("dlq")
    engine = create_engine(backend=Memory(cluster=cluster))
    done = asyncio.Event()
    handled: set[int] = set()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        concurrency=4,
        ordering="key",
        value_deserializer=int,
        middlewares=[Middleware(DeadLetterMiddleware, topic="dlq", retries=0)],
    )
    async def bill(cr: ConsumerRecord[bytes, int]) -> None:
        if cr.value == 4:
            raise ValueError("bad amount")
        handled.add(cr.value)
        if len(handled) == 9:
            done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    dead = cluster.records(TopicPartition("dlq", 0))
    assert [r.value for r in dead] == [b"4"]
    assert cluster.committed("g", TopicPartition("t", 0)) == 10


def test_concurrency_is_checked_at_declaration() -> None:
    """concurrency > 1 needs a record handler; bad values and orderings name the parameter."""
    engine = create_engine(backend="memory")
    with pytest.raises(StreamError, match="concurrency=4 needs a handler taking one"):

        @engine.stream("t", concurrency=4)
        async def loop(stream: Stream) -> None: ...

    with pytest.raises(StreamError, match="concurrency=2"):

        @engine.stream("t", concurrency=2, get_many=GetMany())
        async def batch(crs: list[ConsumerRecord[Any, Any]]) -> None: ...

    with pytest.raises(StreamError, match="concurrency=2"):

        @engine.stream("t", concurrency=2)
        async def gen(cr: ConsumerRecord[Any, Any]):  # type: ignore[no-untyped-def]
            yield cr

    with pytest.raises(StreamError, match="concurrency must be an int >= 1, got 0"):

        @engine.stream("t", concurrency=0)
        async def zero(cr: ConsumerRecord[Any, Any]) -> None: ...

    with pytest.raises(StreamError, match="ordering must be one of"):

        @engine.stream("t", concurrency=2, ordering="offset")  # type: ignore[arg-type]
        async def odd(cr: ConsumerRecord[Any, Any]) -> None: ...
