"""A stop that lands while a stream is still joining its group cancels the start, bounded,
and leaves nothing open: a group that never settles must not keep a stop waiting."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from typing import Any

import pytest

from kstreams import ConsumerRecord, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.cli import serve
from kstreams.exceptions import StreamError
from tests.recording import RecordingBackend, RecordingConsumer


class NeverSettles(RecordingBackend):
    """Consumers whose start waits for a first assignment that never comes, as aiokafka's
    does while a broker keeps the group rebalancing."""

    def __init__(self) -> None:
        super().__init__(Memory(cluster=MemoryCluster()))
        self.joining = asyncio.Event()

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> Any:
        consumer: RecordingConsumer = super().create_consumer(group_id=group_id, options=options)
        inner_start = consumer.start

        async def start() -> None:
            await inner_start()
            self.joining.set()
            await asyncio.Event().wait()

        consumer.start = start  # type: ignore[method-assign]
        return consumer


def engine_with_a_stream(backend: NeverSettles) -> Any:
    engine = create_engine(backend=backend)

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    return engine


async def test_engine_stop_during_a_start_that_never_joins_cancels_it() -> None:
    """engine.stop() while engine.start() waits on the group: the start returns, the stop
    returns, and the consumer and the producer are both closed."""
    backend = NeverSettles()
    engine = engine_with_a_stream(backend)
    starting = asyncio.create_task(engine.start())
    await backend.joining.wait()

    await asyncio.wait_for(engine.stop(), 5)
    await asyncio.wait_for(starting, 5)

    assert starting.exception() is None
    assert backend.kinds() == ["producer.start", "consumer.start", "consumer.stop", "producer.stop"]
    assert not engine.get_stream("handle").running


async def test_stream_stop_during_its_start_makes_the_start_raise() -> None:
    """stream.stop() while stream.start() waits on the group: start raises StreamError
    naming the stream, and the port it opened is stopped."""
    backend = NeverSettles()
    engine = engine_with_a_stream(backend)
    stream = engine.get_stream("handle")
    starting = asyncio.create_task(stream.start())
    await backend.joining.wait()

    await asyncio.wait_for(stream.stop(), 5)

    with pytest.raises(StreamError, match="'handle' was stopped while it was starting"):
        await starting
    assert backend.kinds()[-1] == "consumer.stop"
    assert not stream.running


async def test_a_caller_that_gives_up_waiting_cancels_the_start() -> None:
    """A start bounded by the caller (wait_for) that times out leaves no consumer open, and
    the stream can be started again."""
    backend = NeverSettles()
    engine = engine_with_a_stream(backend)
    stream = engine.get_stream("handle")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.start(), 0.2)

    assert backend.kinds()[-2:] == ["consumer.start", "consumer.stop"]
    assert not stream.running
    second = asyncio.create_task(stream.start())
    await asyncio.sleep(0.05)
    assert backend.kinds().count("consumer.start") == 2
    await stream.stop()
    with pytest.raises(StreamError):
        await second


async def test_a_signal_while_the_service_joins_its_group_stops_it() -> None:
    """`kstreams run` receiving SIGTERM while the engine still waits on its group exits 0,
    with the consumer and the producer closed."""
    backend = NeverSettles()
    engine = engine_with_a_stream(backend)
    serving = asyncio.create_task(serve(engine, graceful_timeout_s=5))
    await backend.joining.wait()

    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(serving, 10) == 0
    assert backend.kinds() == ["producer.start", "consumer.start", "consumer.stop", "producer.stop"]


class SlowHook:
    """An on_startup hook that waits until released: a stop lands before any stream starts."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def __call__(self) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_engine_stop_during_the_startup_hooks_leaves_nothing_started() -> None:
    """engine.stop() while an on_startup hook runs: the start returns, and neither the
    producer nor any consumer is ever started."""
    backend = NeverSettles()
    hook = SlowHook()
    engine = create_engine(backend=backend, on_startup=[hook])

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    starting = asyncio.create_task(engine.start())
    await hook.entered.wait()
    await asyncio.wait_for(engine.stop(), 5)
    await asyncio.wait_for(starting, 5)

    assert backend.kinds() == []
    assert not engine.started


async def test_removing_a_stream_that_is_joining_does_not_fail_the_engine_start() -> None:
    """remove_stream of a stream still joining while engine.start() waits: the start of the
    other streams goes on and the engine runs."""
    backend = NeverSettles()
    engine = create_engine(backend=backend)

    @engine.stream("t", group_id="g")
    async def stuck(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    starting = asyncio.create_task(engine.start())
    await backend.joining.wait()
    await asyncio.wait_for(engine.remove_stream("stuck"), 5)
    await asyncio.wait_for(starting, 5)

    assert engine.started
    await engine.stop()
    assert backend.kinds() == ["producer.start", "consumer.start", "consumer.stop", "producer.stop"]
