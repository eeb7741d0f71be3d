"""Every example of the stream documentation, run unchanged on the memory backend.

The examples' typos are fixed (a missing ``=``, an undefined ``payload``, the
``Stream`` import); their stream functions are otherwise as documented. Each
test adds only what it needs to observe them: a send and a wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from kstreams import Stream, TopicPartition, create_engine
from kstreams.backends.memory import MemoryCluster, reset_default_cluster


@pytest.fixture(autouse=True)
def memory_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryCluster]:
    """KSTREAMS_BACKEND=memory, on a default cluster of this test's own."""
    monkeypatch.setenv("KSTREAMS_BACKEND", "memory")
    yield reset_default_cluster()
    reset_default_cluster()


async def wait_for_lines(capsys: pytest.CaptureFixture[str], count: int) -> list[str]:
    async def enough() -> list[str]:
        lines: list[str] = []
        while len(lines) < count:
            lines += capsys.readouterr().out.splitlines()
            await asyncio.sleep(0.01)
        return lines

    return await asyncio.wait_for(enough(), 10)


async def test_stream_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """The 'Stream usage' example prints the headers and payload of what it consumes."""
    stream_engine = create_engine(title="my-stream-engine")

    # here you can add any other AIOKafkaConsumer config, for example auto_offset_reset
    @stream_engine.stream("local--py-stream", group_id="de-my-partition")
    async def stream(stream: Stream) -> None:
        async for cr in stream:
            print(f"Event consumed: headers: {cr.headers}, payload: {cr.value}")

    async def main() -> None:
        await stream_engine.init_streaming()
        await stream_engine.send("local--py-stream", value=b"hi", headers={"k": "v"})
        assert await wait_for_lines(capsys, 1) == [
            "Event consumed: headers: (('k', b'v'),), payload: b'hi'"
        ]
        await stream_engine.stop_streaming()

    await main()


async def test_consume_from_multiple_topics(capsys: pytest.CaptureFixture[str]) -> None:
    """One stream given a list of topics consumes from each."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(["local--kstreams", "local--hello-world"], group_id="example-group")
    async def consume(stream: Stream) -> None:
        async for cr in stream:
            print(
                f"Event consumed from topic {cr.topic}: headers: {cr.headers}, payload: {cr.value}"
            )

    await stream_engine.start()
    await stream_engine.send("local--kstreams", value=b"1")
    await stream_engine.send("local--hello-world", value=b"2")
    lines = await wait_for_lines(capsys, 2)
    await stream_engine.stop()
    assert sorted(lines) == [
        "Event consumed from topic local--hello-world: headers: (), payload: b'2'",
        "Event consumed from topic local--kstreams: headers: (), payload: b'1'",
    ]


async def test_changing_consumer_behavior(
    capsys: pytest.CaptureFixture[str], memory_backend: MemoryCluster
) -> None:
    """aiokafka kwargs (session_timeout_ms, auto_offset_reset) reach the consumer: earliest reads
    what was produced before the stream started."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(
        "local--kstream",
        group_id="de-my-partition",
        session_timeout_ms=500,
        auto_offset_reset="earliest",
    )
    async def stream(stream: Stream) -> None:
        async for cr in stream:
            print(f"Event consumed: headers: {cr.headers}, payload: {cr.value}")

    memory_backend.append("local--kstream", b"already there")
    await stream_engine.start()
    assert await wait_for_lines(capsys, 1) == [
        "Event consumed: headers: (), payload: b'already there'"
    ]
    await stream_engine.stop()


async def test_manual_commit(
    capsys: pytest.CaptureFixture[str], memory_backend: MemoryCluster
) -> None:
    """With enable_auto_commit=False the offset moves only when the example commits."""
    stream_engine = create_engine(title="my-stream-engine")
    stored: list[Any] = []

    async def store_in_database(payload: Any) -> None:
        stored.append(payload)

    @stream_engine.stream("local--kstream", group_id="de-my-partition", enable_auto_commit=False)
    async def stream(stream: Stream) -> None:
        async for cr in stream:
            print(f"Event consumed: headers: {cr.headers}, payload: {cr.value}")

            # We need to make sure that the payload was stored before committing the kafka offset
            await store_in_database(cr.value)
            await stream.consumer.commit()  # type: ignore[union-attr]  # You need to commit!!!

    await stream_engine.start()
    await stream_engine.send("local--kstream", value=b"important")
    await wait_for_lines(capsys, 1)
    await stream_engine.stop()
    assert stored == [b"important"]
    assert memory_backend.committed("de-my-partition", TopicPartition("local--kstream", 0)) == 1


async def test_yield_from_stream() -> None:
    """A yielding stream is consumed with 'async with stream as stream_flow'."""
    stream_engine = create_engine(title="my-stream-engine")

    # Create your stream
    @stream_engine.stream("local--kstream")
    async def stream(stream: Stream):  # type: ignore[no-untyped-def]
        async for cr in stream:
            yield cr.value

    await stream_engine.start()
    got = []
    # Consume the stream:
    async with stream as stream_flow:  # Use the context manager
        for value in (b"a", b"b"):
            await stream_engine.send("local--kstream", value=value)
        async for value in stream_flow:
            got.append(value)
            if len(got) == 2:
                break
    assert got == [b"a", b"b"]
    assert not stream.running
    await stream_engine.stop()
