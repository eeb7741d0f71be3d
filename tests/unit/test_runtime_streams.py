"""Streams added, removed and restarted while the engine runs, on the memory backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kstreams import ConsumerRecord, Stream, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import DuplicateStreamError, StreamError


class Seen:
    def __init__(self) -> None:
        self.values: list[bytes] = []
        self._changed = asyncio.Event()

    async def handle(self, cr: ConsumerRecord[bytes, bytes]) -> None:
        self.values.append(cr.value)
        self._changed.set()

    async def wait_for(self, count: int, within: float = 5) -> list[bytes]:
        async def reached() -> None:
            while len(self.values) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), within)
        return self.values


def stream_of(seen: Seen, topic: str, name: str, **options: Any) -> Stream:
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        await seen.handle(cr)

    return Stream(topic, func=handle, name=name, group_id=f"g-{name}", **options)


async def test_add_stream_on_a_started_engine_starts_it() -> None:
    """A stream added to a running engine starts by itself; await stream.start() joins that
    start, and the stream consumes."""
    cluster = MemoryCluster()
    cluster.append("late", b"0")
    engine = create_engine(backend=Memory(cluster=cluster))
    await engine.start()
    seen = Seen()
    stream = stream_of(seen, "late", "late", auto_offset_reset="earliest")
    engine.add_stream(stream)
    await stream.start()
    assert stream.running
    assert engine.get_stream("late") is stream
    await engine.send("late", value=b"1")
    assert await seen.wait_for(2) == [b"0", b"1"]
    await engine.stop()
    assert not stream.running
    assert cluster.committed("g-late", TopicPartition("late", 0)) == 2


async def test_the_decorator_on_a_started_engine_starts_the_stream_too() -> None:
    """@engine.stream after engine.start() declares and starts the stream."""
    cluster = MemoryCluster()
    cluster.append("t", b"x")
    engine = create_engine(backend=Memory(cluster=cluster))
    await engine.start()
    seen = Seen()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        await seen.handle(cr)

    assert await seen.wait_for(1) == [b"x"]
    await engine.stop()


async def test_remove_stream_stops_commits_and_forgets_it() -> None:
    """remove_stream stops the stream, commits what it handled, and the engine forgets it;
    other streams go on."""
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    seen_a, seen_b = Seen(), Seen()
    a = stream_of(seen_a, "a", "a", auto_commit_interval_ms=3_600_000)
    b = stream_of(seen_b, "b", "b")
    engine.add_stream(a)
    engine.add_stream(b)
    await engine.start()
    await engine.send("a", value=b"a0")
    await seen_a.wait_for(1)
    await engine.remove_stream("a")
    assert not a.running
    assert engine.get_stream("a") is None
    assert engine.streams == [b]
    assert a.engine is None
    assert cluster.committed("g-a", TopicPartition("a", 0)) == 1
    await engine.send("a", value=b"a1")
    await engine.send("b", value=b"b0")
    assert await seen_b.wait_for(1) == [b"b0"]
    await engine.stop()
    assert seen_a.values == [b"a0"]
    with pytest.raises(StreamError, match="no stream named 'a'"):
        await engine.remove_stream(a)


async def test_a_stream_restarted_at_runtime_resumes_where_it_committed() -> None:
    """stop() then start() of one stream reads on from its committed offset, nothing twice."""
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Seen()
    stream = stream_of(seen, "t", "t", auto_offset_reset="earliest")
    engine.add_stream(stream)
    await engine.start()
    await engine.send("t", value=b"0")
    await seen.wait_for(1)
    await stream.stop()
    await engine.send("t", value=b"1")
    await stream.start()
    assert await seen.wait_for(2) == [b"0", b"1"]
    await engine.stop()


async def test_a_duplicate_name_is_rejected_at_runtime_and_the_first_stream_goes_on() -> None:
    """Adding a second stream of an existing name fails clearly and changes nothing."""
    engine = create_engine(backend="memory")
    seen = Seen()
    first = stream_of(seen, "t", "orders")
    engine.add_stream(first)
    await engine.start()
    duplicate = stream_of(Seen(), "u", "orders")
    with pytest.raises(DuplicateStreamError, match="'orders'"):
        engine.add_stream(duplicate)
    assert engine.get_stream("orders") is first
    assert not duplicate.running
    assert duplicate.engine is None
    await engine.stop()


async def test_stopping_the_engine_while_an_added_stream_starts_leaves_nothing_running() -> None:
    """engine.stop() right after add_stream waits for that start, then stops the stream."""
    engine = create_engine(backend="memory")
    await engine.start()
    stream = stream_of(Seen(), "t", "racy")
    engine.add_stream(stream)
    await engine.stop()
    assert not stream.running
    assert stream.consumer is not None
    assert stream.consumer.closed


async def test_removing_a_stream_right_after_adding_it_waits_for_its_start() -> None:
    """remove_stream straight after add_stream, before the start task ran, cancels that
    start: the stream never runs and opens no consumer."""
    engine = create_engine(backend="memory")
    await engine.start()
    stream = stream_of(Seen(), "t", "brief")
    engine.add_stream(stream)
    await engine.remove_stream(stream)
    await asyncio.sleep(0.05)
    assert not stream.running
    assert stream.consumer is None
    await engine.stop()
