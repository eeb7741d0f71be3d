"""Middlewares and handler injection on the memory backend."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kstreams import (
    BaseMiddleware,
    ConsumerRecord,
    Middleware,
    Send,
    Stream,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import HandlerSignatureError, StreamError


class Trace(BaseMiddleware):
    """Logs entering and leaving around the rest of the chain."""

    def __init__(self, *, label: str, log: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.log = log

    async def __call__(self, cr: Any) -> Any:
        self.log.append(f"{self.label}>")
        try:
            return await self.next_call(cr)
        finally:
            self.log.append(f"<{self.label}")


async def test_middlewares_wrap_the_handler_in_declared_order_outermost_first() -> None:
    """The first declared middleware is entered first and left last."""
    cluster = MemoryCluster()
    cluster.append("t", b"x")
    engine = create_engine(backend=Memory(cluster=cluster))
    log: list[str] = []
    done = asyncio.Event()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        middlewares=[
            Middleware(Trace, label="a", log=log),
            Middleware(Trace, label="b", log=log),
            Middleware(Trace, label="c", log=log),
        ],
    )
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        log.append("handler")
        done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert log == ["a>", "b>", "c>", "handler", "<c", "<b", "<a"]


async def test_a_middleware_gets_send_and_stream_and_may_skip_the_handler() -> None:
    """A middleware can produce with send, see its stream, and drop a record, which then counts
    as handled and is committed."""
    cluster = MemoryCluster()
    for value in (b"keep", b"drop", b"keep"):
        cluster.append("in", value)
    engine = create_engine(backend=Memory(cluster=cluster))
    handled: list[int] = []
    done = asyncio.Event()
    streams_seen: list[str] = []

    class Filter(BaseMiddleware):
        async def __call__(self, cr: Any) -> Any:
            streams_seen.append(self.stream.name)
            if cr.value == b"drop":
                await self.send("dropped", value=cr.value, key=b"%d" % cr.offset)
                if cr.offset == 2:
                    done.set()
                return None
            return await self.next_call(cr)

    @engine.stream(
        "in", group_id="g", auto_offset_reset="earliest", middlewares=[Middleware(Filter)]
    )
    async def keep(cr: ConsumerRecord[bytes, bytes]) -> None:
        handled.append(cr.offset)
        if cr.offset == 2:
            done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert handled == [0, 2]
    assert streams_seen == ["keep"] * 3
    (dropped,) = cluster.records(TopicPartition("dropped", 0))
    assert (dropped.key, dropped.value) == (b"1", b"drop")
    assert cluster.committed("g", TopicPartition("in", 0)) == 3


async def test_a_middleware_error_is_the_handlers_failure() -> None:
    """An exception raised by a middleware applies the error policy; the record is not committed."""
    cluster = MemoryCluster()
    cluster.append("t", b"0")
    cluster.append("t", b"1")
    engine = create_engine(backend=Memory(cluster=cluster))
    failed = asyncio.Event()

    class Guard(BaseMiddleware):
        async def __call__(self, cr: Any) -> Any:
            if cr.offset == 1:
                failed.set()
                raise PermissionError("not allowed")
            return await self.next_call(cr)

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        middlewares=[Middleware(Guard)],
        error_policy=StreamErrorPolicy.STOP,
    )
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        pass

    await engine.start()
    await asyncio.wait_for(failed.wait(), 5)
    await engine.stop()
    assert isinstance(handle.error, PermissionError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 1


def test_middleware_options_are_checked_at_declaration() -> None:
    """A misspelled or missing option of a middleware fails where it is declared."""

    class Needs(BaseMiddleware):
        def __init__(self, *, limit: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.limit = limit

        @classmethod
        def check_options(cls, **options: Any) -> None:
            if options["limit"] < 1:
                raise ValueError("limit must be positive")

    class Strict(BaseMiddleware):
        def __init__(self, *, next_call: Any, send: Any, stream: Any, size: int = 1) -> None:
            super().__init__(next_call=next_call, send=send, stream=stream)

    with pytest.raises(TypeError, match="Needs"):
        Middleware(Needs)
    with pytest.raises(ValueError, match="positive"):
        Middleware(Needs, limit=0)
    with pytest.raises(TypeError, match="sise"):
        Middleware(Strict, sise=2)
    with pytest.raises(TypeError, match="not a BaseMiddleware"):
        Middleware(dict)  # type: ignore[arg-type]
    assert Middleware(Strict, size=2).kwargs == {"size": 2}


def test_middlewares_need_a_handler_that_returns() -> None:
    """Middlewares on an 'async for' stream or a generator handler fail at declaration."""
    engine = create_engine(backend="memory")
    with pytest.raises(StreamError, match="async for"):

        @engine.stream("t", name="a", middlewares=[Middleware(Trace, label="x", log=[])])
        async def loop(stream: Stream) -> None: ...

    with pytest.raises(StreamError, match="generator"):

        @engine.stream("t", name="b", middlewares=[Middleware(Trace, label="x", log=[])])
        async def gen(cr: ConsumerRecord[Any, Any]) -> AsyncIterator[Any]:
            yield cr


async def test_handlers_get_record_stream_and_send_by_annotation_in_any_order() -> None:
    """ConsumerRecord, Stream and Send are injected by annotation, whatever the order."""
    cluster = MemoryCluster()
    cluster.append("t", b"v")
    engine = create_engine(backend=Memory(cluster=cluster))
    got: dict[str, Any] = {}
    done = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(send: Send, stream: Stream, cr: ConsumerRecord[bytes, bytes]) -> None:
        got.update(send=send, stream=stream, value=cr.value)
        await send("echo", value=cr.value)
        done.set()

    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert got["stream"] is handle
    assert got["send"] == engine.send
    assert got["value"] == b"v"
    assert [r.value for r in cluster.records(TopicPartition("echo", 0))] == [b"v"]


async def test_injection_is_resolved_once_at_declaration_not_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Annotations are read once, when the stream is declared; 50 records read none."""
    import kstreams.injection

    calls: list[object] = []
    real = typing.get_type_hints

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(kstreams.injection.typing, "get_type_hints", counting)
    cluster = MemoryCluster()
    for i in range(50):
        cluster.append("t", b"%d" % i)
    engine = create_engine(backend=Memory(cluster=cluster))
    count = 0
    done = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes], stream: Stream) -> None:
        nonlocal count
        count += 1
        if count == 50:
            done.set()

    assert calls == [handle.func]
    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert calls == [handle.func]


def test_an_unsupported_annotation_is_a_clear_error_at_decoration() -> None:
    """A parameter kstreams cannot inject names itself and the annotations it accepts."""
    engine = create_engine(backend="memory")
    with pytest.raises(HandlerSignatureError) as info:

        @engine.stream("t")
        async def handle(cr: ConsumerRecord[Any, Any], retries: int) -> None: ...

    message = str(info.value)
    assert "'retries'" in message
    assert "ConsumerRecord, list[ConsumerRecord], Stream, Send or SendMany" in message
    assert isinstance(info.value, TypeError)
    assert engine.get_stream("handle") is None
