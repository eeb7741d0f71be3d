"""TestStreamClient fails the test when a handler raises (issue 10, defect 12)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kstreams import ConsumerRecord, Send, StreamErrorPolicy, create_engine
from kstreams.test_utils import TestStreamClient


class Boom(Exception):
    """The handler's own exception, so nothing else can be mistaken for it."""


def failing_engine(policy: StreamErrorPolicy = StreamErrorPolicy.STOP) -> Any:
    """A service that forwards "in" to "out", and raises on the value b"bad"."""
    engine = create_engine(title="failing", backend="memory")

    @engine.stream("in", group_id="g", error_policy=policy)
    async def forward(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        if cr.value == b"bad":
            raise Boom(f"cannot handle offset {cr.offset}")
        await send("out", value=cr.value)

    return engine


async def test_leaving_the_block_raises_the_handlers_exception() -> None:
    """A handler that raises (STOP policy) makes the `async with` block raise that exception."""
    client = TestStreamClient(failing_engine())

    async def run() -> None:
        async with client:
            await client.send("in", value=b"good")
            await client.send("in", value=b"bad")

    with pytest.raises(Boom, match="offset 1"):
        await run()


async def test_stop_engine_policy_raises_the_handlers_exception_too() -> None:
    """With STOP_ENGINE the engine stops, and leaving the block raises the handler's error."""
    client = TestStreamClient(failing_engine(StreamErrorPolicy.STOP_ENGINE))

    async def run() -> None:
        async with client:
            await client.send("in", value=b"bad")

    with pytest.raises(Boom):
        await run()


async def test_a_waiting_get_event_is_woken_with_the_handlers_exception() -> None:
    """get_event waiting for a record the failed stream never sends raises its error at once."""
    client = TestStreamClient(failing_engine(), topics=["out"], timeout_s=10)

    async def run() -> None:
        async with client:
            await client.send("in", value=b"bad")
            await client.get_event(topic_name="out")

    started = time.monotonic()
    with pytest.raises(Boom):
        await run()
    assert time.monotonic() - started < 5, "get_event waited for its timeout"


async def test_get_event_after_the_failure_raises_it() -> None:
    """A get_event called once the stream already failed raises the error, not a timeout."""
    engine = failing_engine()
    client = TestStreamClient(engine, topics=["out"], timeout_s=10)
    errors: list[BaseException | None] = []

    async def run() -> None:
        async with client:
            await client.send("in", value=b"bad")
            await client.wait_handled(timeout_s=5)
            stream = engine.get_stream("forward")
            errors.append(stream.error if stream is not None else None)
            await client.get_event(topic_name="out", timeout_s=5)

    with pytest.raises(Boom):
        await run()
    assert isinstance(errors[0], Boom)


async def test_records_before_the_failure_are_still_readable() -> None:
    """get_event hands out what the stream sent before failing, then raises the failure."""
    client = TestStreamClient(failing_engine(), topics=["out"])
    read: list[bytes] = []

    async def run() -> None:
        async with client:
            await client.send("in", value=b"one")
            read.append((await client.get_event(topic_name="out")).value)
            await client.send("in", value=b"bad")
            await client.get_event(topic_name="out")

    with pytest.raises(Boom):
        await run()
    assert read == [b"one"]


async def test_the_blocks_own_exception_wins_and_names_the_failure() -> None:
    """An assertion failing in the block propagates, with a note naming the failed stream."""
    client = TestStreamClient(failing_engine())

    async def run() -> None:
        async with client:
            await client.send("in", value=b"bad")
            await client.wait_handled(timeout_s=5)
            raise AssertionError("the test's own check")

    with pytest.raises(AssertionError) as info:
        await run()
    assert "the test's own check" in str(info.value)
    assert any("'forward' failed" in note for note in info.value.__notes__)


async def test_a_handler_that_recovers_under_restart_does_not_fail_the_test() -> None:
    """RESTART keeps the stream going: an error it recovered from is logged, not raised."""
    engine = create_engine(title="flaky", backend="memory")
    calls: list[int] = []

    @engine.stream(
        "in", group_id="g", error_policy=StreamErrorPolicy.RESTART, auto_offset_reset="earliest"
    )
    async def flaky(cr: ConsumerRecord[bytes, bytes]) -> None:
        calls.append(cr.offset)
        if len(calls) == 1:
            raise Boom("first call only")

    client = TestStreamClient(engine)
    async with client:
        await client.send("in", value=b"x")
        await client.send("in", value=b"y")
    assert calls[-1] == 1
    assert client.get_topic("in").committed("g") == {0: 2}


def test_the_engine_is_given_once() -> None:
    """kpn's `stream_engine=` names the engine; giving it twice, or never, is a TypeError."""
    engine = failing_engine()
    assert TestStreamClient(stream_engine=engine).engine is engine
    assert TestStreamClient(engine, monitoring_enabled=False).engine is engine
    with pytest.raises(TypeError, match="engine once"):
        TestStreamClient(engine, stream_engine=engine)
    with pytest.raises(TypeError, match="engine once"):
        TestStreamClient()
