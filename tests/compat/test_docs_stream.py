"""kpn/kstreams' "Streams", "Getting Started" and index pages, as a migrating user runs them:
engines declared without a backend, run on the memory backend by TestStreamClient."""

from __future__ import annotations

import asyncio
import logging
import re
import signal

import pytest

from kstreams import (
    BatchEvent,
    ConsumerRecord,
    Send,
    SendMany,
    Stream,
    TopicPartition,
    create_engine,
    structs,
)
from kstreams.consts import StreamErrorPolicy
from kstreams.test_utils import TestStreamClient


async def test_getting_started_consume_and_produce() -> None:
    """The getting-started service: a stream with a group, and `engine.send` with a str key."""
    stream_engine = create_engine(title="my-stream-engine")
    consumed: list[ConsumerRecord] = []

    @stream_engine.stream("local--py-stream", group_id="de-my-partition")
    async def consume(cr: ConsumerRecord) -> None:
        consumed.append(cr)

    async def produce() -> None:
        payload = b'{"message": "Hello world!"}'
        for _ in range(5):
            metadata = await stream_engine.send("local--py-stream", value=payload, key="1")
            assert metadata.topic == "local--py-stream"

    async with TestStreamClient(stream_engine):
        await produce()
    assert [cr.value for cr in consumed] == [b'{"message": "Hello world!"}'] * 5
    assert {cr.key for cr in consumed} == {b"1"}


async def test_every_injection_the_stream_page_shows() -> None:
    """ConsumerRecord, Stream, Send and SendMany are injected in any order, with manual commit."""
    stream_engine = create_engine(title="my-stream-engine")
    seen: list[str] = []

    @stream_engine.stream("local--kstreams", group_id="g1")
    async def only_record(cr: ConsumerRecord) -> None:
        seen.append("record")

    @stream_engine.stream("local--kstreams", group_id="g2", enable_auto_commit=False)
    async def with_stream(cr: ConsumerRecord, stream: Stream) -> None:
        seen.append("stream")
        await stream.commit()

    @stream_engine.stream("local--kstreams", group_id="g3", enable_auto_commit=False)
    async def with_send(cr: ConsumerRecord, stream: Stream, send: Send) -> None:
        await stream.commit()
        await send("sink-to-elastic-topic", value=cr.value)

    @stream_engine.stream("local--kstreams", group_id="g4", enable_auto_commit=False)
    async def with_send_many(cr: ConsumerRecord, stream: Stream, send_many: SendMany) -> None:
        await stream.commit()
        batch_events = [
            BatchEvent(value=f"Hello world {id}!".encode(), key=str(id)) for id in range(5)
        ]
        await send_many("local--kstreams-send-many", batch_events=batch_events, partition=0)

    @stream_engine.stream("local--kstreams", group_id="g5")
    async def reversed_order(send: Send, cr: ConsumerRecord) -> None:
        seen.append("reversed")

    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("local--kstreams", value=b"hi")
        sunk = await client.get_event(topic_name="sink-to-elastic-topic")
        assert sunk.value == b"hi"
    assert sorted(seen) == ["record", "reversed", "stream"]
    many = client.get_topic("local--kstreams-send-many")
    assert [r.value for r in many.records()] == [f"Hello world {i}!".encode() for i in range(5)]
    assert client.get_topic("local--kstreams").committed("g4") == {0: 1}


async def test_old_fashion_async_for_loop() -> None:
    """A handler taking only the stream iterates it with `async for`."""
    stream_engine = create_engine(title="my-stream-engine")
    values: list[bytes] = []

    @stream_engine.stream("local--kstreams", group_id="old")
    async def consume(stream):  # type: ignore[no-untyped-def]  # the page's own spelling
        async for cr in stream:
            values.append(cr.value)

    client = TestStreamClient(stream_engine)
    async with client:
        for value in (b"a", b"b"):
            await client.send("local--kstreams", value=value)
    assert values == [b"a", b"b"]


async def test_stream_instance_added_and_removed() -> None:
    """`Stream(topic, name=..., func=..., deserializer=...)`, `add_stream`, `remove_stream`."""
    stream_engine = create_engine(title="my-stream-engine")
    got: list[object] = []

    class MyDeserializer:
        async def deserialize(self, consumer_record: ConsumerRecord, **kwargs: object) -> str:
            return str(consumer_record.value.decode())

    async def stream_func(cr: ConsumerRecord) -> None:
        got.append(cr)

    stream = Stream(
        "local--kstreams",
        name="my-stream",
        func=stream_func,
        deserializer=MyDeserializer(),
        group_id="instance",
    )
    stream_engine.add_stream(stream)
    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("local--kstreams", value=b"decoded")
        await client.wait_handled()
        await stream_engine.remove_stream(stream)
        assert stream_engine.get_stream("my-stream") is None
        await client.send("local--kstreams", value=b"after removal")
    assert got == ["decoded"]


async def test_initial_offsets_from_a_database() -> None:
    """`initial_offsets=[structs.TopicPartitionOffset(...)]` starts the stream there."""
    topic_name = "local--kstreams"
    stream_engine = create_engine(title="my-stream-engine")
    offsets: list[int] = []

    async def my_stream(cr: ConsumerRecord) -> None:
        offsets.append(cr.offset)

    initial_offset = structs.TopicPartitionOffset(topic=topic_name, partition=0, offset=3)
    stream = Stream(
        topic_name,
        name="my-stream",
        func=my_stream,
        group_id="from-db",
        initial_offsets=[initial_offset],
    )
    client = TestStreamClient(stream_engine)
    async with client:
        for i in range(5):
            await client.send(topic_name, value=str(i).encode())
        stream_engine.add_stream(stream)
        await stream.start()
        await client.wait_handled()
    assert offsets == [3, 4]


async def test_stop_policy_stops_the_stream_and_fails_the_test() -> None:
    """STOP (the default): the stream stops at the error, which the test client raises."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("local--hello-world", group_id="example-group")
    async def stream(cr: ConsumerRecord) -> None:
        if cr.key == b"error":
            raise ValueError("error....")

    client = TestStreamClient(stream_engine)

    async def run() -> None:
        async with client:
            await client.send("local--hello-world", value=b"x", key="error")

    with pytest.raises(ValueError, match=r"error\.\.\.\."):
        await run()
    assert not stream.running


async def test_stop_engine_policy_stops_every_stream() -> None:
    """STOP_ENGINE: one stream's error stops the other streams and the producer."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("a", group_id="a", error_policy=StreamErrorPolicy.STOP_ENGINE)
    async def failing(cr: ConsumerRecord) -> None:
        raise ValueError("stop everything")

    @stream_engine.stream("b", group_id="b")
    async def bystander(cr: ConsumerRecord) -> None: ...

    engine_stopped = asyncio.Event()
    stream_engine.after_stop(engine_stopped.set)
    client = TestStreamClient(stream_engine)
    stopped: list[bool] = []

    async def run() -> None:
        async with client:
            await client.send("a", value=b"x")
            await asyncio.wait_for(engine_stopped.wait(), 10)
            stopped.append(not bystander.running)

    with pytest.raises(ValueError, match="stop everything"):
        await run()
    assert stopped == [True]


async def test_stop_application_policy_sends_sigterm() -> None:
    """STOP_APPLICATION: the engine stops, then the process is sent SIGTERM."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(
        topics=["local--hello-world"],
        group_id="example-group",
        error_policy=StreamErrorPolicy.STOP_APPLICATION,
    )
    async def consume(cr: ConsumerRecord) -> None:
        if cr.value == b"error":
            raise ValueError("error....")

    sigterm = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The loop takes SIGTERM for the length of the test, instead of pytest ending.
    loop.add_signal_handler(signal.SIGTERM, sigterm.set)
    client = TestStreamClient(stream_engine)

    async def run() -> None:
        async with client:
            await client.send("local--hello-world", value=b"error")
            await asyncio.wait_for(sigterm.wait(), 10)

    try:
        with pytest.raises(ValueError, match=r"error\.\.\.\."):
            await run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    assert sigterm.is_set()
    assert not stream_engine.started


async def test_restart_policy_skips_the_failing_event(caplog: pytest.LogCaptureFixture) -> None:
    """RESTART: the stream restarts, the event that raised is skipped (logged, not raised)."""
    stream_engine = create_engine(title="my-stream-engine")
    handled: list[bytes] = []

    @stream_engine.stream(
        "local--hello-world", group_id="example-group", error_policy=StreamErrorPolicy.RESTART
    )
    async def stream(cr: ConsumerRecord) -> None:
        if cr.key == b"error":
            raise ValueError("error....")
        handled.append(cr.value)

    client = TestStreamClient(stream_engine, timeout_s=5)
    with caplog.at_level(logging.ERROR):
        async with client:
            await client.send("local--hello-world", value=b"before")
            await client.send("local--hello-world", value=b"poison", key="error")
            await client.send("local--hello-world", value=b"after")
    assert handled == [b"before", b"after"]
    assert client.get_topic("local--hello-world").committed("example-group") == {0: 3}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # The skipped record's topic, partition and offset, in this order.
    assert any(re.search(r"local--hello-world\D+0\D+1\b", m) for m in errors), errors


async def test_manual_commit() -> None:
    """`enable_auto_commit=False` and `await stream.commit()` after each record."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("local--kstream", group_id="de-my-partition", enable_auto_commit=False)
    async def stream(cr: ConsumerRecord, stream: Stream) -> None:
        await stream.commit()

    client = TestStreamClient(stream_engine)
    async with client:
        for _ in range(3):
            await client.send("local--kstream", value=b"x")
    assert client.get_topic("local--kstream").committed("de-my-partition") == {0: 3}


async def test_yield_from_a_stream() -> None:
    """A generator handler, consumed with `async with stream as stream_flow: async for ...`."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("local--kstream", group_id="sse", auto_offset_reset="earliest")
    async def stream(cr: ConsumerRecord, stream: Stream):  # type: ignore[no-untyped-def]
        yield cr.value

    client = TestStreamClient(stream_engine)
    values: list[bytes] = []
    async with client:
        for value in (b"1", b"2", b"3"):
            await client.send("local--kstream", value=value)
        async with stream as stream_flow:
            async for value in stream_flow:
                values.append(value)
                if len(values) == 3:
                    break
    assert values == [b"1", b"2", b"3"]


async def test_deprecated_getmany_loop() -> None:
    """The `Stream.getmany` docstring loop reads batches (a dict per partition)."""
    stream_engine = create_engine(title="my-stream-engine")
    batches: list[dict[TopicPartition, list[ConsumerRecord]]] = []

    @stream_engine.stream("local--kstreams", group_id="many")
    async def stream(stream: Stream) -> None:
        while True:
            data = await stream.getmany(max_records=5, timeout_ms=100)
            if data:
                batches.append(data)

    client = TestStreamClient(stream_engine)
    async with client:
        for i in range(3):
            await client.send("local--kstreams", value=str(i).encode())
        await client.wait_handled()
    records = [cr for batch in batches for crs in batch.values() for cr in crs]
    assert [cr.value for cr in records] == [b"0", b"1", b"2"]


async def test_deprecated_getmany_loop_stops_without_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping the engine ends a `while True: await stream.getmany()` loop without an ERROR."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("local--kstreams", group_id="many")
    async def stream(stream: Stream) -> None:
        while True:
            await stream.getmany(max_records=5, timeout_ms=100)

    with caplog.at_level(logging.WARNING):
        async with TestStreamClient(stream_engine) as client:
            await client.send("local--kstreams", value=b"x")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
