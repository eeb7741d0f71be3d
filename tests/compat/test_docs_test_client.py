"""kpn/kstreams' "Testing" page: TestStreamClient, get_event, TopicManager checks."""

from __future__ import annotations

import asyncio
import typing
from dataclasses import dataclass, field

import pytest

from kstreams import (
    BatchEvent,
    ConsumerRecord,
    RecordMetadata,
    Stream,
    TopicPartition,
    create_engine,
)
from kstreams.exceptions import IllegalOperationError
from kstreams.test_utils import TestStreamClient, TopicManager


@dataclass
class EventStore:
    """Store events in memory (the page's example)."""

    events: list[ConsumerRecord] = field(default_factory=list)

    def add(self, event: ConsumerRecord) -> None:
        self.events.append(event)

    @property
    def total(self) -> int:
        return len(self.events)


async def test_add_event_on_consume() -> None:
    """The page's first test: send twice through the client, offsets grow, the store has 2."""
    topic = "local--kstreams"
    stream_engine = create_engine(title="my-stream-engine")
    event_store = EventStore()

    @stream_engine.stream(topic, group_id="example-group")
    async def consume(cr: ConsumerRecord) -> None:
        event_store.add(cr)

    client = TestStreamClient(stream_engine)
    event = b'{"message": "Hello world!"}'
    async with client:
        metadata = await client.send(topic, value=event, key="1")
        current_offset = metadata.offset
        assert metadata.topic == topic
        metadata = await client.send(topic, value=b'{"message": "Hello world!"}', key="1")
        assert metadata.offset == current_offset + 1
    assert event_store.total == 2


async def test_commit_without_a_group_is_refused() -> None:
    """The page's commit test declares no group_id: Kafka (and kstreams) refuse that commit,
    so the test fails with IllegalOperationError instead of passing as on kpn's client."""
    stream_engine = create_engine(title="my-stream-engine")
    tp = TopicPartition(topic="local--kstreams-marcos", partition=0)

    @stream_engine.stream("local--kstreams-marcos", name="my-stream")
    async def my_stream(cr: ConsumerRecord, stream: Stream) -> None:
        await stream.commit({tp: cr.offset})

    client = TestStreamClient(stream_engine)

    async def run() -> None:
        async with client:
            await client.send("local--kstreams-marcos", partition=0, value=b"x", key="1")

    with pytest.raises(IllegalOperationError, match="group"):
        await run()


async def test_commit_with_a_group() -> None:
    """With a group the commit test runs; the offset to commit is the next one to read."""
    topic_name = "local--kstreams-marcos"
    partition = 2
    total_events = 10
    tp = TopicPartition(topic=topic_name, partition=partition)
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(topic_name, name="my-stream", group_id="commits")
    async def my_stream(cr: ConsumerRecord, stream: Stream) -> None:
        await stream.commit({tp: cr.offset + 1})

    client = TestStreamClient(stream_engine, partitions=3)
    async with client:
        for _ in range(total_events):
            await client.send(topic_name, partition=partition, value=b"x", key="1")
        await client.wait_handled()
        stream = stream_engine.get_stream("my-stream")
        assert stream is not None
        assert stream.consumer is not None
        assert await stream.consumer.committed(tp) == total_events


async def test_producer_only() -> None:
    """Producer code sends; `client.get_event(topic_name=...)` reads it (the key as bytes)."""
    stream_engine = create_engine(title="my-stream-engine")

    async def produce(topic: str, value: bytes, key: str) -> None:
        await stream_engine.send(topic, value=value, key=key)

    client = TestStreamClient(stream_engine)
    async with client:
        await produce(topic="local--kstreams", value=b'{"message": "Hello world!"}', key="1")
        consumer_record = await client.get_event(topic_name="local--kstreams")
        assert consumer_record.value == b'{"message": "Hello world!"}'
        assert consumer_record.key == b"1"


async def test_send_many_and_topic_manager() -> None:
    """The SendMany section: `TopicManager.get(...)` counts 5 events, all consumed."""
    stream_engine = create_engine(title="my-stream-engine")

    async def send_many() -> list[RecordMetadata]:
        batch_events = [
            BatchEvent(value=f"Hello world {id}!".encode(), key=str(id)) for id in range(5)
        ]
        return await stream_engine.send_many(
            topic="local--kstreams-send-many", batch_events=batch_events, partition=0
        )

    client = TestStreamClient(stream_engine)
    async with client:
        batch_metadata: typing.List[RecordMetadata] = await send_many()  # noqa: UP006
        topic = TopicManager.get("local--kstreams-send-many")
        assert topic.total_events == 5
        assert topic.consumed
        assert topic.offset(partition=0) == 4
    first_batch_metadata = batch_metadata[0]
    assert first_batch_metadata.partition == 0
    assert first_batch_metadata.topic == "local--kstreams-send-many"
    assert [m.offset for m in batch_metadata] == [0, 1, 2, 3, 4]


async def test_extra_topics() -> None:
    """`TestStreamClient(engine, topics=["target-topic"])`: read what a stream forwarded."""
    stream_engine = create_engine(title="my-stream-engine")
    saved: list[bytes] = []

    @stream_engine.stream("source-topic", name="forward", group_id="g")
    async def consume(cr: ConsumerRecord) -> None:
        saved.append(cr.value)
        await stream_engine.send("target-topic", value=cr.value, key=cr.key, headers=cr.headers)

    client = TestStreamClient(stream_engine, topics=["target-topic"])
    async with client:
        await client.send("source-topic", value=b'{"message": "Hello world!"}', key="my-key")
        event = await client.get_event(topic_name="target-topic")
        assert event.value == b'{"message": "Hello world!"}'
        assert event.key == b"my-key"
    assert saved == [b'{"message": "Hello world!"}']


async def test_topics_subscribed_by_pattern() -> None:
    """A pattern stream sees the predefined topics; then every message was consumed."""
    customer_invoice_topic = "dev--customer-invoice"
    customer_profile_topic = "dev--customer-profile"
    stream_engine = create_engine(title="my-stream-engine")
    seen: list[str] = []

    @stream_engine.stream(topics="^dev--customer-.*$", subscribe_by_pattern=True, group_id="p")
    async def stream(cr: ConsumerRecord) -> None:
        if cr.topic == customer_invoice_topic:
            assert cr.value == b"invoice-1"
        elif cr.topic == customer_profile_topic:
            assert cr.value == b"profile-1"
        else:
            raise ValueError(f"Invalid topic {cr.topic}")
        seen.append(cr.topic)

    client = TestStreamClient(
        stream_engine, topics=[customer_invoice_topic, customer_profile_topic]
    )
    async with client:
        await client.send(customer_invoice_topic, value=b"invoice-1", key="1")
        await client.send(customer_profile_topic, value=b"profile-1", key="1")
        await client.wait_handled()
        assert TopicManager.all_messages_consumed()
    assert sorted(seen) == [customer_invoice_topic, customer_profile_topic]


async def test_topic_manager_sees_what_is_not_consumed_yet() -> None:
    """`TopicManager.all_messages_consumed()` is False while a record waits for its handler."""
    stream_engine = create_engine(title="my-stream-engine")
    entered = asyncio.Event()
    release = asyncio.Event()

    @stream_engine.stream("held", group_id="g")
    async def held(cr: ConsumerRecord) -> None:
        entered.set()
        await release.wait()

    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("held", value=b"x")
        await asyncio.wait_for(entered.wait(), 10)
        topic = TopicManager.get("held")
        assert topic.total_events == 1
        assert not topic.consumed
        assert not TopicManager.all_messages_consumed()
        release.set()
        await client.wait_handled()
        assert topic.consumed
        assert TopicManager.all_messages_consumed()
    with pytest.raises(ValueError, match="does not exist"):
        TopicManager.get("never-sent-to")


def test_disabling_monitoring() -> None:
    """`TestStreamClient(stream_engine, monitoring_enabled=False)` is accepted."""
    stream_engine = create_engine(title="my-stream-engine")
    client = TestStreamClient(stream_engine, monitoring_enabled=False)
    assert client.engine is stream_engine


async def test_one_module_level_client_serves_several_tests() -> None:
    """The page keeps `client = TestStreamClient(stream_engine)` at module level: each
    `async with client` starts on a fresh cluster, so tests do not see each other's records."""
    stream_engine = create_engine(title="my-stream-engine")
    event_store = EventStore()

    @stream_engine.stream("local--kstreams", group_id="example-group")
    async def consume(cr: ConsumerRecord) -> None:
        event_store.add(cr)

    client = TestStreamClient(stream_engine)
    for run in range(2):
        async with client:
            metadata = await client.send("local--kstreams", value=f"run {run}".encode())
            assert metadata.offset == 0
            assert TopicManager.get("local--kstreams").total_events == 1
    assert [cr.value for cr in event_store.events] == [b"run 0", b"run 1"]
