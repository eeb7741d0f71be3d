"""TestStreamClient: a service runs on a client-owned memory cluster, whatever its backend."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from kstreams import BatchEvent, ConsumerRecord, Send, create_engine
from kstreams.backends import Aiokafka, Confluent, Memory
from kstreams.exceptions import StreamError
from kstreams.test_utils import RecordsNotHandledError, TestStreamClient


@pytest.fixture
def listening_port() -> Iterator[tuple[socket.socket, int]]:
    """A loopback port that accepts connections, to tell whether anything tried one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock, int(sock.getsockname()[1])


def assert_nothing_connected(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def forwarding_engine(backend: Any) -> tuple[Any, list[bytes]]:
    """A service: reads "orders", keeps the values, forwards them upper-cased to "shipped"."""
    engine = create_engine(title="shop", backend=backend)
    seen: list[bytes] = []

    @engine.stream("orders", group_id="shop", auto_offset_reset="earliest")
    async def ship(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        seen.append(cr.value)
        await send("shipped", value=cr.value.upper(), key=cr.key)

    return engine, seen


async def test_exit_waits_until_every_record_is_handled_and_committed() -> None:
    """Leaving the block returns only once the stream handled and committed every record."""
    engine, seen = forwarding_engine("memory")
    client = TestStreamClient(engine)
    async with client:
        for i in range(20):
            await client.send("orders", value=f"o{i}".encode(), key=b"k")
    assert seen == [f"o{i}".encode() for i in range(20)]
    orders = client.get_topic("orders")
    assert orders.total_events == 20
    assert orders.committed("shop") == {0: 20}
    assert orders.total_committed() == 20
    assert orders.consumed
    assert client.get_topic("shipped").total_events == 20
    assert not engine.started


async def test_service_for_aiokafka_is_tested_without_a_broker(
    listening_port: tuple[socket.socket, int],
) -> None:
    """An engine configured for aiokafka runs in memory: nothing connects, backend restored."""
    sock, port = listening_port
    backend = Aiokafka(bootstrap_servers=f"127.0.0.1:{port}")
    engine, seen = forwarding_engine(backend)
    async with TestStreamClient(engine) as client:
        await client.send("orders", value=b"book")
        shipped = await client.get_event(topic_name="shipped")
        assert shipped.value == b"BOOK"
    assert seen == [b"book"]
    assert engine.backend is backend
    assert_nothing_connected(sock)


async def test_service_for_confluent_is_tested_without_a_broker(
    listening_port: tuple[socket.socket, int],
) -> None:
    """An engine configured for confluent-kafka runs in memory: nothing connects."""
    sock, port = listening_port
    backend = Confluent(bootstrap_servers=f"127.0.0.1:{port}")
    engine, seen = forwarding_engine(backend)
    async with TestStreamClient(engine) as client:
        await client.send_many("orders", [BatchEvent(value=b"a"), BatchEvent(value=b"b")])
    assert seen == [b"a", b"b"]
    assert client.get_topic("orders").consumed
    assert engine.backend is backend
    assert_nothing_connected(sock)


async def test_a_stream_with_its_own_backend_is_moved_too(
    listening_port: tuple[socket.socket, int],
) -> None:
    """A stream carrying its own backend consumes from the client's cluster, then gets it back."""
    sock, port = listening_port
    engine = create_engine(backend="memory")
    own = Aiokafka(bootstrap_servers=f"127.0.0.1:{port}")
    got: list[bytes] = []

    @engine.stream("in", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        got.append(cr.value)

    handle.backend = own
    async with TestStreamClient(engine) as client:
        await client.send("in", value=b"x")
    assert got == [b"x"]
    assert handle.backend is own
    assert_nothing_connected(sock)


async def test_get_event_takes_records_in_order_without_removing_them() -> None:
    """get_event hands each record once, oldest first, and the topic keeps them all."""
    engine = create_engine(backend="memory")
    async with TestStreamClient(engine, partitions=3) as client:
        for i in range(6):
            await client.send("events", value=f"v{i}".encode(), partition=i % 3, timestamp_ms=i)
        values = [(await client.get_event(topic_name="events")).value for _ in range(6)]
        topic = client.get_topic("events")
        assert topic.taken == 6
        assert topic.is_empty()
        assert topic.total_events == 6
        assert len(topic.records()) == 6
        assert topic.partitions == 3
        assert topic.end_offsets == {0: 2, 1: 2, 2: 2}
    assert values == [f"v{i}".encode() for i in range(6)]


async def test_get_event_waits_for_a_record_produced_later() -> None:
    """get_event waits for the next record instead of failing on an empty topic."""
    engine = create_engine(backend="memory")
    async with TestStreamClient(engine, topics=["later"]) as client:
        waiting = asyncio.create_task(client.get_event(topic_name="later", timeout_s=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await client.send("later", value=b"now")
        record = await asyncio.wait_for(waiting, 5)
    assert record.value == b"now"


async def test_get_event_times_out_when_nothing_is_left() -> None:
    """A topic with nothing left to take raises TimeoutError after the wait."""
    engine = create_engine(backend="memory")
    async with TestStreamClient(engine) as client:
        await client.send("once", value=b"1")
        await client.get_event(topic_name="once")
        with pytest.raises(TimeoutError, match=r"'once'.*1 already taken"):
            await client.get_event(topic_name="once", timeout_s=0.05)


async def test_get_event_uses_the_engine_deserializer() -> None:
    """Records come out through the engine's deserializer unless told otherwise."""

    class JsonSerializer:
        async def serialize(self, payload: Any, headers: Any = None, **kwargs: Any) -> bytes:
            return json.dumps(payload).encode()

    class JsonDeserializer:
        async def deserialize(
            self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
        ) -> ConsumerRecord[Any, Any]:
            return dataclasses.replace(consumer_record, value=json.loads(consumer_record.value))

    engine = create_engine(
        backend="memory", serializer=JsonSerializer(), deserializer=JsonDeserializer()
    )
    async with TestStreamClient(engine) as client:
        await client.send("json", value={"n": 1})
        await client.send("json", value={"n": 2})
        assert (await client.get_event(topic_name="json")).value == {"n": 1}
        raw = await client.get_event(topic_name="json", deserializer=None)
        assert raw.value == b'{"n": 2}'


async def test_two_clients_run_side_by_side_without_sharing_state() -> None:
    """Each client has its own cluster: the same topic name holds different records."""
    engine_a, seen_a = forwarding_engine("memory")
    engine_b, seen_b = forwarding_engine("memory")
    async with TestStreamClient(engine_a) as a, TestStreamClient(engine_b) as b:
        await a.send("orders", value=b"a1")
        await b.send("orders", value=b"b1")
        await b.send("orders", value=b"b2")
        assert (await a.get_event(topic_name="shipped")).value == b"A1"
        assert (await b.get_event(topic_name="shipped")).value == b"B1"
    assert seen_a == [b"a1"]
    assert seen_b == [b"b1", b"b2"]
    assert a.get_topic("orders").total_events == 1
    assert b.get_topic("orders").total_events == 2


async def test_exit_names_what_was_not_handled_in_time() -> None:
    """A stuck handler makes exit raise RecordsNotHandledError naming stream and partition."""
    engine = create_engine(backend="memory")
    release = asyncio.Event()

    @engine.stream("slow", group_id="slow-group", auto_offset_reset="earliest")
    async def stuck(cr: ConsumerRecord[bytes, bytes]) -> None:
        await release.wait()

    stuck.graceful_timeout_s = 0.2
    client = TestStreamClient(engine, timeout_s=0.3)

    async def send_two() -> None:
        async with client:
            await client.send("slow", value=b"1")
            await client.send("slow", value=b"2")

    with pytest.raises(RecordsNotHandledError) as caught:
        await send_two()
    message = str(caught.value)
    assert "stream 'stuck' (group 'slow-group')" in message
    assert "slow[0] handled up to offset 0 of 2" in message
    assert isinstance(caught.value, AssertionError)
    assert not engine.started
    assert isinstance(engine.backend, Memory)


async def test_an_error_in_the_block_skips_the_wait_and_restores() -> None:
    """When the test body fails, exit does not wait; it stops the engine and re-raises."""
    engine = create_engine(backend="memory")
    release = asyncio.Event()

    @engine.stream("never", group_id="g", auto_offset_reset="earliest")
    async def blocked(cr: ConsumerRecord[bytes, bytes]) -> None:
        await release.wait()

    blocked.graceful_timeout_s = 0.1
    original = engine.backend

    async def fail_inside() -> None:
        async with TestStreamClient(engine, timeout_s=30) as client:
            await client.send("never", value=b"x")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_inside()
    assert not engine.started
    assert engine.backend is original


async def test_wait_handled_inside_the_block() -> None:
    """wait_handled lets a test check side effects before leaving the block."""
    engine, seen = forwarding_engine("memory")
    async with TestStreamClient(engine) as client:
        await client.send("orders", value=b"x")
        await client.wait_handled()
        assert seen == [b"x"]


async def test_pattern_streams_see_the_declared_topics() -> None:
    """Topics given to the client exist from the start, so a pattern stream consumes them."""
    engine = create_engine(backend="memory")
    got: list[str] = []

    @engine.stream("^customer-.*", group_id="c", subscribe_by_pattern=True)
    async def customers(cr: ConsumerRecord[bytes, bytes]) -> None:
        got.append(cr.topic)

    topics = ["customer-invoice", "customer-profile"]
    async with TestStreamClient(engine, topics=topics) as client:
        await client.send("customer-invoice", value=b"i")
        await client.send("customer-profile", value=b"p")
    assert sorted(got) == topics
    assert client.get_topic("customer-profile").consumed


async def test_a_running_engine_is_refused() -> None:
    """The client cannot move an engine that is already running."""
    engine = create_engine(backend="memory")
    await engine.start()
    try:
        with pytest.raises(StreamError, match="already running"):
            async with TestStreamClient(engine):
                pass
    finally:
        await engine.stop()


async def test_topic_committed_needs_a_group_when_ambiguous() -> None:
    """get_topic().committed() without group_id names the groups to choose from."""
    engine = create_engine(backend="memory")

    @engine.stream("shared", group_id="one", auto_offset_reset="earliest")
    async def first(cr: ConsumerRecord[bytes, bytes]) -> None:
        pass

    @engine.stream("shared", group_id="two", auto_offset_reset="earliest")
    async def second(cr: ConsumerRecord[bytes, bytes]) -> None:
        pass

    async with TestStreamClient(engine) as client:
        await client.send("shared", value=b"x")
    topic = client.get_topic("shared")
    assert topic.groups == {"one", "two"}
    with pytest.raises(ValueError, match="one, two"):
        topic.committed()
    assert topic.committed("two") == {0: 1}
    assert topic.consumed
