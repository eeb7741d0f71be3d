"""GetMany batches on the memory backend: sizes, order, and commit after the batch is handled."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from kstreams import (
    BaseMiddleware,
    ConsumerRecord,
    GetMany,
    Middleware,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster

Batch = list[ConsumerRecord[Any, Any]]


def filled(topic: str, count: int) -> MemoryCluster:
    cluster = MemoryCluster()
    for i in range(count):
        cluster.append(topic, b"%d" % i)
    return cluster


async def test_batches_respect_max_records_and_keep_order() -> None:
    """A list[ConsumerRecord] handler gets every record once, in order, max_records at a time."""
    cluster = filled("bulk", 10)
    engine = create_engine(backend=Memory(cluster=cluster))
    batches: list[list[int]] = []
    done = asyncio.Event()

    @engine.stream(
        "bulk",
        group_id="g",
        auto_offset_reset="earliest",
        get_many=GetMany(max_records=4, timeout_ms=50),
    )
    async def bulk(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        batches.append([cr.offset for cr in crs])
        if sum(map(len, batches)) == 10:
            done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert cluster.committed("g", TopicPartition("bulk", 0)) == 10


async def test_a_failing_batch_commits_none_of_its_records() -> None:
    """The batch that raises is not committed at all; the batches before it are."""
    cluster = filled("bulk", 10)
    engine = create_engine(backend=Memory(cluster=cluster))
    failed = asyncio.Event()

    @engine.stream(
        "bulk",
        group_id="g",
        auto_offset_reset="earliest",
        get_many=GetMany(max_records=4),
        error_policy=StreamErrorPolicy.STOP,
    )
    async def bulk(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        if any(cr.offset == 5 for cr in crs):
            failed.set()
            raise RuntimeError("bulk write failed")

    await engine.start()
    await asyncio.wait_for(failed.wait(), 5)
    await engine.stop()
    assert isinstance(bulk.error, RuntimeError)
    assert cluster.committed("g", TopicPartition("bulk", 0)) == 4


async def test_a_batch_is_committed_only_once_its_handler_returned() -> None:
    """While a batch is being handled, even a 1 ms auto-commit does not commit it."""
    cluster = filled("bulk", 3)
    engine = create_engine(backend=Memory(cluster=cluster))
    entered, release, returned = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @engine.stream(
        "bulk",
        group_id="g",
        auto_offset_reset="earliest",
        auto_commit_interval_ms=1,
        get_many=GetMany(max_records=10),
    )
    async def bulk(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        entered.set()
        await release.wait()
        returned.set()

    await engine.start()
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(5):  # several fetch rounds, each a chance to auto-commit
        await asyncio.sleep(0.02)
    tp = TopicPartition("bulk", 0)
    assert cluster.committed("g", tp) is None
    release.set()
    await asyncio.wait_for(returned.wait(), 5)
    await engine.stop()
    assert cluster.committed("g", tp) == 3


async def test_no_empty_batches_and_batches_come_as_records_arrive() -> None:
    """An idle stream does not call its handler with an empty list; new records still come."""
    cluster = MemoryCluster()
    cluster.create_topic("idle", partitions=1)
    engine = create_engine(backend=Memory(cluster=cluster))
    batches: list[Batch] = []
    got = asyncio.Event()

    @engine.stream("idle", group_id="g", get_many=GetMany(max_records=5, timeout_ms=10))
    async def idle(crs: Batch) -> None:
        batches.append(crs)
        got.set()

    await engine.start()
    await asyncio.sleep(0.1)  # ten timeouts' worth of nothing
    assert batches == []
    await engine.send("idle", value=b"late")
    await asyncio.wait_for(got.wait(), 5)
    await engine.stop()
    assert [[cr.value for cr in batch] for batch in batches] == [[b"late"]]


async def test_batches_are_deserialized_and_go_through_middlewares_as_lists() -> None:
    """A deserializer applies to every record of a batch; a middleware receives the list."""

    class Decode:
        async def deserialize(
            self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
        ) -> ConsumerRecord[Any, Any]:
            return dataclasses.replace(consumer_record, value=int(consumer_record.value))

    seen_by_middleware: list[int] = []

    class Count(BaseMiddleware):
        async def __call__(self, cr: Any) -> Any:
            seen_by_middleware.append(len(cr))
            return await self.next_call(cr)

    cluster = filled("nums", 6)
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=Decode())
    total: list[int] = []
    done = asyncio.Event()

    @engine.stream(
        "nums",
        group_id="g",
        auto_offset_reset="earliest",
        get_many=GetMany(max_records=3),
        middlewares=[Middleware(Count)],
    )
    async def nums(crs: list[ConsumerRecord[bytes, int]]) -> None:
        total.extend(cr.value for cr in crs)
        if len(total) == 6:
            done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert total == [0, 1, 2, 3, 4, 5]
    assert seen_by_middleware == [3, 3]


def test_get_many_bounds_are_checked() -> None:
    """Non-positive GetMany bounds fail at declaration."""
    with pytest.raises(ValueError, match="max_records"):
        GetMany(max_records=0)
    with pytest.raises(ValueError, match="timeout_ms"):
        GetMany(timeout_ms=-1)
