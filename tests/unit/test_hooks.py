"""Engine hooks on the memory backend: when each runs, sync or async, and failing ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kstreams import ConsumerRecord, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from tests.recording import RecordingBackend


async def test_hooks_run_around_the_producer_and_the_streams() -> None:
    """on_startup before anything connects, after_startup once streams run, on_stop before
    they stop, after_stop once the producer is closed."""
    backend = RecordingBackend(Memory(cluster=MemoryCluster()))

    def log(name: str) -> Any:
        return lambda: backend.log.append((name,))

    engine = create_engine(
        backend=backend,
        on_startup=[log("on_startup")],
        after_startup=[log("after_startup")],
        on_stop=[log("on_stop")],
        after_stop=[log("after_stop")],
    )

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    await engine.start()
    await engine.stop()
    assert backend.kinds() == [
        "on_startup",
        "producer.start",
        "consumer.start",
        "after_startup",
        "on_stop",
        "consumer.stop",
        "producer.stop",
        "after_stop",
    ]


async def test_decorators_and_arguments_sync_and_async_run_in_the_order_added() -> None:
    """Hooks given to create_engine run first, then decorated ones, each awaited if async."""
    calls: list[str] = []

    async def async_arg() -> None:
        await asyncio.sleep(0)
        calls.append("async arg")

    engine = create_engine(
        backend="memory", on_startup=[lambda: calls.append("sync arg"), async_arg]
    )

    @engine.on_startup
    async def decorated_async() -> None:
        await asyncio.sleep(0)
        calls.append("decorated async")

    @engine.on_startup
    def decorated_sync() -> None:
        calls.append("decorated sync")

    @engine.after_startup
    def after_startup() -> None:
        calls.append("after_startup")

    @engine.on_stop
    async def on_stop() -> None:
        calls.append("on_stop")

    @engine.after_stop
    def after_stop() -> None:
        calls.append("after_stop")

    assert decorated_sync is not None  # the decorators return the function
    await engine.start()
    await engine.stop()
    assert calls == [
        "sync arg",
        "async arg",
        "decorated async",
        "decorated sync",
        "after_startup",
        "on_stop",
        "after_stop",
    ]


async def test_a_failing_stop_hook_still_stops_everything_then_raises() -> None:
    """An on_stop hook raising does not leave consumers or the producer running; every stop
    hook runs and the first error is raised at the end."""
    backend = RecordingBackend(Memory(cluster=MemoryCluster()))
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("flush metrics failed")

    engine = create_engine(
        backend=backend,
        on_stop=[broken, lambda: ran.append("next on_stop")],
        after_stop=[lambda: ran.append("after_stop")],
    )

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    await engine.start()
    with pytest.raises(RuntimeError, match="flush metrics failed"):
        await engine.stop()
    assert ran == ["broken", "next on_stop", "after_stop"]
    assert backend.kinds()[-2:] == ["consumer.stop", "producer.stop"]
    assert not handle.running
    assert not engine.started


async def test_a_failing_startup_hook_fails_start_before_anything_connects() -> None:
    """An on_startup hook raising makes start() raise, with nothing started."""
    backend = RecordingBackend(Memory(cluster=MemoryCluster()))

    def broken() -> None:
        raise ConnectionError("no database")

    engine = create_engine(backend=backend, on_startup=[broken])
    with pytest.raises(ConnectionError):
        await engine.start()
    assert backend.log == []
    assert not engine.started


def test_a_hook_must_be_callable() -> None:
    """A non-callable hook is refused where it is given."""
    with pytest.raises(TypeError, match="not callable"):
        create_engine(backend="memory", on_stop=["not a function"])  # type: ignore[list-item]
    engine = create_engine(backend="memory")
    with pytest.raises(TypeError, match="not callable"):
        engine.after_stop(42)
