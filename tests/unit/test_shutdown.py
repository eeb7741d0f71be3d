"""Stop, error and cancellation paths always finish: single-flight, bounded, escalating."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from kstreams import fetcher as fetcher_module
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.dead_letter import DeadLetterMiddleware
from kstreams.exceptions import DeserializationError, KafkaConnectionError
from tests.offsets import Offsets
from tests.recording import RecordingBackend, RecordingConsumer

TP = TopicPartition("t", 0)


def filled(count: int, topic: str = "t") -> MemoryCluster:
    cluster = MemoryCluster()
    for i in range(count):
        cluster.append(topic, b"%d" % i)
    return cluster


class BrokerGone(RecordingBackend):
    """Consumers whose commits hang or fail once ``broken``, as with a broker that vanished."""

    def __init__(self, cluster: MemoryCluster, *, hang: bool = False, fail: bool = False) -> None:
        super().__init__(Memory(cluster=cluster))
        self.hang = hang
        self.fail = fail
        self.broken = False

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> Any:
        consumer: RecordingConsumer = super().create_consumer(group_id=group_id, options=options)
        inner_commit = consumer.commit

        async def commit(offsets: Mapping[TopicPartition, int]) -> None:
            if self.broken and self.hang:
                await asyncio.Event().wait()  # the coordinator never answers
            if self.broken and self.fail:
                raise KafkaConnectionError("coordinator unreachable")
            await inner_commit(offsets)

        consumer.commit = commit  # type: ignore[method-assign]
        return consumer


@pytest.fixture
def short_commit_bound(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(fetcher_module, "COMMIT_TIMEOUT_S", 0.2)
    return 0.2


@pytest.mark.parametrize("broken", ["hang", "fail"])
async def test_stop_is_bounded_and_closes_whatever_the_final_commit_does(
    broken: str, short_commit_bound: float
) -> None:
    """A final commit that never returns or raises (broker gone) is bounded and logged:
    stop() still closes the client and running is False."""
    backend = BrokerGone(filled(3), hang=broken == "hang", fail=broken == "fail")
    engine = create_engine(backend=backend)
    seen = Offsets()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        seen.add(cr.offset)

    await engine.start()
    await seen.until(3)
    backend.broken = True
    await asyncio.wait_for(engine.stop(), short_commit_bound + 2)
    assert not handle.running
    assert ("consumer.stop", "g#0") in backend.log


async def test_stop_engine_escalates_even_when_the_commit_on_close_fails(
    short_commit_bound: float,
) -> None:
    """STOP_ENGINE is decided before the close: a failing close cannot swallow it."""
    backend = BrokerGone(filled(3), fail=True)
    stopped = asyncio.Event()
    engine = create_engine(backend=backend, after_stop=[stopped.set])

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.STOP_ENGINE
    )
    async def fatal(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            backend.broken = True
            raise RuntimeError("the broker is why this failed")

    await engine.start()
    await asyncio.wait_for(stopped.wait(), 5)
    assert not engine.started
    assert not fatal.running
    assert not engine.producer.started
    await engine.start()  # a stopped engine starts again, the failed stream with it
    assert fatal.running
    await engine.stop()


async def test_engine_stop_from_inside_a_handler_completes() -> None:
    """await engine.stop() in a handler returns at once; the stop completes once the handler
    returns: the record is committed, the producer closed, after_stop hooks run."""
    cluster = filled(3)
    stopped = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster), after_stop=[stopped.set])

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            await engine.stop()

    await engine.start()
    await asyncio.wait_for(stopped.wait(), 5)
    assert not handle.running
    assert not engine.producer.started
    assert cluster.committed("g", TP) == 2


async def test_stream_stop_from_inside_its_own_handler_completes() -> None:
    """await stream.stop() in its own handler does not wait for itself."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))
    done = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes], stream: Stream) -> None:
        await stream.stop()
        done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.wait_for(handle.stop(), 5)  # joins the stop the handler began
    assert not handle.running
    assert cluster.committed("g", TP) == 1
    await engine.stop()


async def test_remove_stream_during_engine_stop_still_closes_the_producer() -> None:
    """A stream removed while the engine stops (the SSE pattern's finally) does not break the
    stop: the producer is closed and after_stop hooks run; a second stop waits for the first."""
    cluster = filled(1)
    stopped = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster), after_stop=[stopped.set])
    removing: list[asyncio.Task[None]] = []

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def first(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    @engine.stream("t", group_id="g2", auto_offset_reset="earliest")
    async def second(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    @engine.on_stop
    def remove_one() -> None:
        removing.append(asyncio.get_running_loop().create_task(engine.remove_stream(second)))

    await engine.start()
    await asyncio.wait_for(asyncio.gather(engine.stop(), engine.stop()), 5)
    assert stopped.is_set()
    assert not engine.producer.started
    await asyncio.wait_for(removing[0], 5)
    assert not first.running
    assert not second.running
    assert engine.get_stream("second") is None


async def test_a_concurrent_second_stop_waits_for_the_first() -> None:
    """Two engine.stop() calls at once: both return only when everything is committed and closed."""
    cluster = filled(2)
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Offsets()
    release = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def slow(cr: ConsumerRecord[bytes, bytes]) -> None:
        seen.add(cr.offset)
        await release.wait()

    await engine.start()
    await seen.until(1)
    first = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0.05)
    assert not second.done(), "a second stop must not return while the first is draining"
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert cluster.committed("g", TP) == 1
    assert not engine.producer.started


async def test_a_handler_raising_cancelled_error_goes_through_the_policy() -> None:
    """A CancelledError raised by the handler itself (not by stop) is a failure: the policy
    applies, the error is kept, the stream stops cleanly and leaves its group."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def cancelled(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            raise asyncio.CancelledError("an inner task was cancelled")

    await engine.start()
    await asyncio.wait_for(cancelled.stop(), 5)  # joins the stop the STOP policy began
    assert isinstance(cancelled.error, asyncio.CancelledError)
    assert not cancelled.running
    assert cluster.members("g") == {}
    assert cluster.committed("g", TP) == 1
    await engine.stop()


async def test_a_swallowed_cancellation_does_not_commit_the_aborted_record() -> None:
    """A handler that catches the stop's cancellation and returns did not handle its record:
    it stays uncommitted and is redelivered."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Offsets()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def stubborn(cr: ConsumerRecord[bytes, bytes]) -> None:
        seen.add(cr.offset)
        if cr.offset == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return  # swallowed

    stubborn.graceful_timeout_s = 0.05
    await engine.start()
    await seen.until(2)
    await asyncio.wait_for(engine.stop(), 5)
    assert cluster.committed("g", TP) == 1


async def test_an_async_for_loop_swallowing_cancellation_gets_no_next_record() -> None:
    """An 'async for' loop that swallows cancellation and asks for more gets CancelledError,
    and its record in hand is not committed."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Offsets()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def loop(stream: Stream) -> None:
        async for cr in stream:
            seen.add(cr.offset)
            if cr.offset == 1:
                with contextlib.suppress(asyncio.CancelledError):  # swallowed: the loop goes on
                    await asyncio.Event().wait()

    loop.graceful_timeout_s = 0.05
    await engine.start()
    await seen.until(2)
    await asyncio.wait_for(engine.stop(), 5)
    assert seen.offsets == [0, 1]
    assert cluster.committed("g", TP) == 1


async def test_get_many_with_zero_timeout_does_not_spin_while_idle() -> None:
    """GetMany(timeout_ms=0) on an idle stream waits for records instead of polling in a loop."""
    cluster = MemoryCluster()
    cluster.create_topic("t")
    engine = create_engine(backend=Memory(cluster=cluster))
    batches: list[list[int]] = []
    got = asyncio.Event()

    @engine.stream("t", group_id="g", get_many=GetMany(timeout_ms=0))
    async def batch(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        batches.append([cr.offset for cr in crs])
        got.set()

    await engine.start()
    await batch.wait_until_assigned()
    consumer = batch.consumer
    assert consumer is not None
    calls = 0
    real_getmany = consumer.getmany

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real_getmany(*args, **kwargs)

    consumer.getmany = counting  # type: ignore[method-assign]
    await asyncio.sleep(0.2)  # idle: a spinning loop would call getmany thousands of times
    assert calls <= 2
    await engine.send("t", value=b"x")
    await asyncio.wait_for(got.wait(), 5)
    assert batches == [[0]]
    await engine.stop()


async def test_getmany_of_an_empty_partition_awaits_and_honours_its_timeout() -> None:
    """getmany(tp) returns {} only after awaiting (other tasks run) and after its timeout."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=2)
    for i in range(5):
        cluster.append("t", b"%d" % i, partition=0)
    engine = create_engine(backend=Memory(cluster=cluster))
    release = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def flow(stream: Stream) -> None:
        async for _ in stream:
            await release.wait()  # keeps partition 0's records in the buffer

    await engine.start()
    stream = engine.get_stream("flow")
    assert stream is not None
    await stream.wait_until_assigned()
    consumer = stream.consumer
    assert consumer is not None
    await consumer.wait_for_records(5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.ensure_future(ticker())
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await consumer.getmany(TopicPartition("t", 1), timeout_ms=50) == {}
    assert loop.time() - started >= 0.05
    assert ticks > 0
    ticking.cancel()
    assert await consumer.getmany(TopicPartition("t", 1), timeout_ms=0) == {}
    release.set()
    await engine.stop()


async def test_getmany_of_one_partition_is_not_starved_by_a_full_buffer() -> None:
    """With the buffer full of partition 0, getmany(partition 1) still gets its records."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=2)
    for i in range(400):
        cluster.append("t", b"%d" % i, partition=0)
    engine = create_engine(backend=Memory(cluster=cluster))
    release = asyncio.Event()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        max_buffered_records=50,
        max_poll_records=10,
        max_poll_interval_ms=400,  # pauses after 0.1 s of a full buffer
    )
    async def flow(stream: Stream) -> None:
        await release.wait()  # consumes nothing on its own

    await engine.start()
    await flow.wait_until_assigned()
    consumer = flow.consumer
    assert consumer is not None
    await consumer.wait_for_records(5)
    await asyncio.sleep(0.3)  # the buffer filled with partition 0 and stays full
    for i in range(3):
        cluster.append("t", b"p1-%d" % i, partition=1)
    got = await consumer.getmany(TopicPartition("t", 1), timeout_ms=5000)
    assert [r.value for r in got[TopicPartition("t", 1)]] == [b"p1-0", b"p1-1", b"p1-2"]
    release.set()
    await engine.stop()


async def test_get_many_with_a_record_handler_calls_it_per_record() -> None:
    """get_many=GetMany(...) with a handler taking one ConsumerRecord calls it once per record."""
    cluster = filled(5)
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Offsets()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", get_many=GetMany(max_records=2))
    async def one(cr: ConsumerRecord[bytes, bytes]) -> None:
        seen.add(cr.offset)

    await engine.start()
    await seen.until(5)
    await engine.stop()
    assert seen.offsets == [0, 1, 2, 3, 4]
    assert cluster.committed("g", TP) == 5


class Decoder:
    async def deserialize(self, cr: ConsumerRecord[Any, Any], **kwargs: Any) -> Any:
        if cr.value == b"poison":
            raise ValueError("not a number")
        cr = ConsumerRecord(**{**_fields(cr), "value": int(cr.value)})
        return cr


def _fields(cr: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    return {name: getattr(cr, name) for name in cr.__slots__ if not name.startswith("_")}


async def test_a_poison_pill_reaches_the_dead_letter_middleware() -> None:
    """A record that fails to deserialize goes down the middleware chain like a handler failure:
    DeadLetterMiddleware dead-letters it as consumed and the stream goes on."""
    cluster = MemoryCluster()
    for value in (b"1", b"poison", b"3"):
        cluster.append("t", value)
    cluster.create_topic("t-dlq")
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=Decoder())
    values: list[int] = []
    seen = Offsets()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        middlewares=[Middleware(DeadLetterMiddleware, topic="t-dlq", retries=1, backoff_ms=1)],
    )
    async def handle(cr: ConsumerRecord[bytes, int]) -> None:
        values.append(cr.value)
        seen.add(cr.offset)

    await engine.start()
    await seen.until(2)
    await engine.stop()
    assert values == [1, 3]
    assert handle.error is None
    dead = cluster.records(TopicPartition("t-dlq", 0))
    assert [r.value for r in dead] == [b"poison"]
    headers = dict(dead[0].headers)
    assert headers["kstreams.dlq.exception"] == b"kstreams.exceptions.DeserializationError"
    assert cluster.committed("g", TP) == 3


async def test_a_poison_pill_without_middlewares_follows_the_error_policy() -> None:
    """Without middlewares a deserialization failure is the handler's failure (STOP here)."""
    cluster = MemoryCluster()
    for value in (b"1", b"poison", b"3"):
        cluster.append("t", value)
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=Decoder())

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, int]) -> None: ...

    await engine.start()
    await asyncio.wait_for(handle.stop(), 5)
    assert isinstance(handle.error, DeserializationError)
    assert cluster.committed("g", TP) == 1
    await engine.stop()


async def test_a_normal_stop_of_a_getmany_loop_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deprecated 'while True: await stream.getmany()' loop ending at stop logs no ERROR."""
    cluster = filled(2)
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Offsets()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def loop(stream: Stream) -> None:
        while True:
            batch = await stream.getmany(timeout_ms=100)
            for records in batch.values():
                for cr in records:
                    seen.add(cr.offset)

    await engine.start()
    await seen.until(2)
    await engine.stop()
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


class Warnings(logging.Handler):
    """Collects WARNING messages and lets a test wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()

    async def said(self, text: str) -> None:
        while not any(text in m for m in self.messages):
            self._changed.clear()
            await self._changed.wait()


async def test_an_outage_is_logged_and_makes_the_engine_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No broker reachable for OUTAGE_WARNING_S: a WARNING, and stream.ready / engine.ready turn
    False; once it is reachable again, a WARNING saying so, and ready again."""
    monkeypatch.setattr(fetcher_module, "OUTAGE_WARNING_S", 0.2)
    backend = RecordingBackend(Memory(cluster=filled(1)))
    engine = create_engine(backend=backend)
    up = True

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    await engine.start()
    backend.consumers[0].connected = lambda: up  # type: ignore[method-assign]
    assert engine.ready
    up = False

    warnings = Warnings()
    logging.getLogger("kstreams").addHandler(warnings)
    try:
        await asyncio.wait_for(warnings.said("no broker reachable"), 5)
        assert not handle.ready
        assert not engine.ready
        up = True
        await asyncio.wait_for(warnings.said("reachable again"), 5)
    finally:
        logging.getLogger("kstreams").removeHandler(warnings)
    assert handle.ready
    assert engine.ready
    await engine.stop()
    assert not engine.ready


async def test_a_stream_stopped_by_its_policy_makes_the_engine_not_ready() -> None:
    """A stream that gave up (STOP policy) leaves the engine running but not ready."""
    engine = create_engine(backend=Memory(cluster=filled(2)))

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def fragile(cr: ConsumerRecord[bytes, bytes]) -> None:
        raise ValueError("boom")

    await engine.start()
    await asyncio.wait_for(fragile.stop(), 5)
    assert engine.started
    assert not engine.ready
    await engine.stop()


class InPlaceDecoder:
    """A kpn-style deserializer: assigns the decoded value to the record it is given."""

    async def deserialize(self, cr: ConsumerRecord[Any, Any], **kwargs: Any) -> Any:
        cr.value = int(cr.value)
        return cr


async def test_an_in_place_deserializer_never_changes_what_is_dead_lettered() -> None:
    """A deserializer assigning cr.value works on a copy: the dead letter carries the bytes as
    consumed, not the decoded value."""
    cluster = MemoryCluster()
    for value in (b"1", b"2"):
        cluster.append("t", value)
    cluster.create_topic("t-dlq")
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=InPlaceDecoder())
    seen = Offsets()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        middlewares=[Middleware(DeadLetterMiddleware, topic="t-dlq", retries=0)],
    )
    async def handle(cr: ConsumerRecord[bytes, int]) -> None:
        seen.add(cr.offset)
        if cr.value == 2:
            raise ValueError("refused")

    await engine.start()
    await seen.until(2)
    await engine.stop()
    assert [r.value for r in cluster.records(TopicPartition("t-dlq", 0))] == [b"2"]
    assert [r.value for r in cluster.records(TP)] == [b"1", b"2"]


@pytest.mark.parametrize("policy", [StreamErrorPolicy.STOP, StreamErrorPolicy.STOP_ENGINE])
async def test_a_stop_racing_a_failing_handler_does_not_wait_for_itself(
    policy: StreamErrorPolicy,
) -> None:
    """stop() called while the handler is failing: the stream ends promptly, its error kept
    and its failing record uncommitted, whichever of the two stops comes first."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))
    failing = asyncio.Event()
    release = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", error_policy=policy)
    async def fragile(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            failing.set()
            await release.wait()
            raise ValueError("boom")

    await engine.start()
    await asyncio.wait_for(failing.wait(), 5)
    stopping = asyncio.ensure_future(fragile.stop())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert not fragile.running
    assert isinstance(fragile.error, ValueError)
    assert cluster.committed("g", TP) == 1
    await asyncio.wait_for(engine.stop(), 5)
