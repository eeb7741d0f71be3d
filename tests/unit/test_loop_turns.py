"""A handler that never suspends still leaves the event loop turns, and stops cleanly at one."""

from __future__ import annotations

import asyncio
import time

from kstreams import ConsumerRecord, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster

RECORDS = 400
#: Busy time per record: a few milliseconds for the whole buffer.
BUSY_S = 0.0001
#: Enough records (half a second of them) for a stop to land in the middle.
MANY = 5000


def _busy() -> None:
    end = time.perf_counter() + BUSY_S
    while time.perf_counter() < end:
        pass


async def test_other_tasks_run_while_a_never_suspending_handler_drains_the_buffer() -> None:
    """Another task gets a turn long before the last of 400 buffered records is handled."""
    cluster = MemoryCluster()
    cluster.create_topic("busy", partitions=1)
    for i in range(RECORDS):
        cluster.append("busy", b"%d" % i)
    handled: list[int] = []
    seen_by_ticker: list[int] = []
    done = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster))

    @engine.stream("busy", group_id="g", auto_offset_reset="earliest")
    async def busy(cr: ConsumerRecord[bytes, bytes]) -> None:
        _busy()  # no await: the handler never gives the loop back itself
        handled.append(cr.offset)
        if len(handled) == RECORDS:
            done.set()

    async def ticker() -> None:
        while not done.is_set():
            if handled:
                seen_by_ticker.append(len(handled))
            await asyncio.sleep(0)

    # Ticking before the start: the stream's task may handle records while start returns.
    tick = asyncio.create_task(ticker())
    await engine.start()
    try:
        await asyncio.wait_for(done.wait(), 30)
        await tick
    finally:
        await engine.stop()
    assert handled == list(range(RECORDS))
    assert seen_by_ticker, "the ticker never ran while records were being handled"
    assert min(seen_by_ticker) < RECORDS // 2


async def test_a_stop_landing_on_a_loop_turn_commits_exactly_what_was_handled() -> None:
    """Stopped at one of its loop turns, the stream commits the records it handled, no more."""
    cluster = MemoryCluster()
    cluster.create_topic("busy", partitions=1)
    for i in range(MANY):
        cluster.append("busy", b"%d" % i)
    handled: list[int] = []
    engine = create_engine(backend=Memory(cluster=cluster))
    started = asyncio.Event()

    @engine.stream("busy", group_id="g", auto_offset_reset="earliest")
    async def busy(cr: ConsumerRecord[bytes, bytes]) -> None:
        _busy()
        handled.append(cr.offset)
        started.set()

    await engine.start()
    await asyncio.wait_for(started.wait(), 10)
    # This task runs only at one of the stream's loop turns, between two records.
    await engine.stop()
    assert handled == list(range(len(handled)))
    assert 0 < len(handled) < MANY
    assert cluster.committed("g", TopicPartition("busy", 0)) == len(handled)
