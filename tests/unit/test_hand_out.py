"""A chunk handed out through its iterator keeps handled offsets and the buffer count exact."""

from __future__ import annotations

import asyncio
from collections import deque

from kstreams import ConsumerRecord, Stream, StreamEngine, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.consumer import StreamConsumer
from kstreams.partitions import Chunk, PartitionState, drop_chunks
from kstreams.ports import RawRecord

TP = TopicPartition("t", 0)


def _records(*offsets: int) -> list[RawRecord]:
    return [ConsumerRecord("t", 0, offset, 0, 0, None, b"") for offset in offsets]


def _handed_out(*offsets: int, handled: int | None = None) -> tuple[PartitionState, Chunk]:
    part = PartitionState(TP)
    part.handled = handled
    chunk = Chunk(part, _records(*offsets))
    assert part.hand_out(chunk) == len(offsets)
    return part, chunk


def test_every_record_taken_but_the_last_counts_as_handled() -> None:
    """While a chunk is handed out, every record taken is handled but the one in hand."""
    part, chunk = _handed_out(5, 6, 7, handled=5)
    assert part.handled == 5
    next(chunk.it)  # 5 in hand
    assert part.handled == 5
    next(chunk.it)  # 6 in hand, 5 handled
    assert (part.handled, chunk.pos, chunk.remaining) == (6, 2, 1)
    assert part.hand_back(last_handled=True) == 1
    assert part.handled == 7
    assert part.live is None


def test_a_record_whose_handler_failed_is_not_handled_after_hand_back() -> None:
    """hand_back(last_handled=False) leaves the last record taken unhandled, not those before."""
    part, chunk = _handed_out(3, 4, 5)
    next(chunk.it)
    next(chunk.it)
    assert part.hand_back(last_handled=False) == 1
    assert part.handled == 4
    part, chunk = _handed_out(3, 4, handled=3)
    next(chunk.it)
    part.hand_back(last_handled=False)
    assert part.handled == 3


def test_setting_handled_while_a_record_is_in_hand_holds_until_its_handler_returns() -> None:
    """A rewind (an aborted transaction) during a handler is what handled says until it returns."""
    part, chunk = _handed_out(10, 11, 12, handled=10)
    next(chunk.it)
    next(chunk.it)  # 11 in hand
    part.handled = 8
    assert part.handled == 8
    next(chunk.it)  # 11 returned, 12 in hand
    assert part.handled == 12
    part, chunk = _handed_out(10, 11, handled=10)
    part.handled = 7  # before the first record is taken
    next(chunk.it)
    assert part.handled == 7
    part.hand_back(last_handled=True)
    assert part.handled == 11


def test_dropping_a_chunk_handed_out_ends_its_loop_after_the_record_in_hand() -> None:
    """Dropped records leave the buffer, and a loop over the chunk's iterator stops at once."""
    part, chunk = _handed_out(0, 1, 2, 3)
    other = Chunk(PartitionState(TopicPartition("t", 1)), _records(0, 1))
    later = Chunk(part, _records(4, 5))
    chunks = deque([chunk, other, later])
    next(chunk.it)  # 0 in hand
    first, dropped = drop_chunks(chunks, [part])
    # The chunk handed out counts its own records (none left now); the later one had 2.
    assert (first, dropped) == ({TP: 1}, 2)
    assert list(chunks) == [other]
    assert list(chunk.it) == []
    assert (chunk.pos, part.hand_back(last_handled=True), part.handled) == (1, 0, 1)


def _ten_records() -> tuple[MemoryCluster, StreamEngine]:
    """A one-partition topic of ten records, and an engine on it."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=1)
    for i in range(10):
        cluster.append("t", b"%d" % i)
    return cluster, create_engine(backend=Memory(cluster=cluster))


def _observed(
    cr: ConsumerRecord[bytes, bytes], consumer: StreamConsumer
) -> tuple[int, int | None, list[int], int]:
    """The record's offset, the handled offset, the offsets in hand, the buffer count."""
    in_hand = [r.offset for r in consumer.in_hand_records()]
    return cr.offset, consumer.handled_offsets().get(TP), in_hand, consumer.buffered


async def test_a_typed_handler_sees_exact_handled_offsets_and_buffer_count() -> None:
    """At each record's handler, the records before it are handled and the rest are buffered."""
    cluster, engine = _ten_records()
    seen: list[tuple[int, int | None, list[int], int]] = []
    done = asyncio.Event()
    stream: Stream | None = None

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", max_poll_records=10)
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        await asyncio.sleep(0)  # others run while it is in hand
        assert stream is not None
        assert stream.consumer is not None
        seen.append(_observed(cr, stream.consumer))
        if cr.offset == 9:
            done.set()

    stream = handle
    await engine.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await engine.stop()
    assert seen == [(i, i or None, [i], 9 - i) for i in range(10)]
    assert cluster.committed("g", TP) == 10


async def test_a_stream_iterating_records_sees_the_same_handled_offsets() -> None:
    """With ``async for cr in stream``, asking for the next record is what counts the last one."""
    cluster, engine = _ten_records()
    seen: list[tuple[int, int | None, list[int], int]] = []
    done = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", max_poll_records=10)
    async def flow(stream: Stream) -> None:
        async for cr in stream:
            await asyncio.sleep(0)
            assert stream.consumer is not None
            seen.append(_observed(cr, stream.consumer))
            if cr.offset == 9:
                done.set()

    await engine.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await engine.stop()
    assert seen == [(i, i or None, [i], 9 - i) for i in range(10)]
    assert cluster.committed("g", TP) == 10  # asking for an 11th counted the 10th


async def test_nothing_counts_as_buffered_once_a_stream_stopped_mid_chunk() -> None:
    """A stream stopped with a record in hand and more buffered leaves its consumer empty."""
    cluster, engine = _ten_records()
    third = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", max_poll_records=10)
    async def flow(stream: Stream) -> None:
        async for cr in stream:
            if cr.offset == 2:
                third.set()
                await asyncio.Event().wait()  # in hand until the stop cancels it

    flow.graceful_timeout_s = 0.1  # then the stop cancels the handler
    await engine.start()
    await asyncio.wait_for(third.wait(), 5)
    consumer = flow.consumer
    assert consumer is not None
    assert consumer.buffered == 7
    await engine.stop()
    assert consumer.buffered == 0
    assert cluster.committed("g", TP) == 2
