"""The aiokafka adapter against a real broker, through the ports only."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import anyio
import pytest

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka import AiokafkaConsumer, AiokafkaProducer
from kstreams.ports import RawRecord
from kstreams.records import CREATE_TIME, ConsumerRecord, RecordMetadata, TopicPartition
from tests.broker import PAST_TIMESTAMP_MS, create_topic, free_port, group_timings
from tests.integration.private_broker import private_broker

pytestmark = pytest.mark.integration

PortT = TypeVar("PortT", AiokafkaConsumer, AiokafkaProducer)


@asynccontextmanager
async def started(port: PortT) -> AsyncIterator[PortT]:
    await port.start()
    try:
        yield port
    finally:
        await port.stop()


def consumer(bootstrap: str, group_id: str | None = None, **options: Any) -> AiokafkaConsumer:
    options.setdefault("auto_offset_reset", "earliest")
    if group_id is not None:
        options = {**group_timings(bootstrap), **options}
    return AiokafkaConsumer(group_id=group_id, bootstrap_servers=bootstrap, **options)


async def produce(
    bootstrap: str, topic: str, count: int, *, partition: int | None = 0, **options: Any
) -> list[RecordMetadata]:
    """``count`` records ``b"0"``, ``b"1"``..., each acknowledged before the next is sent."""
    async with started(AiokafkaProducer(bootstrap_servers=bootstrap, **options)) as producer:
        return [
            await (await producer.send(topic, str(i).encode(), partition=partition))
            for i in range(count)
        ]


async def collect(
    port: AiokafkaConsumer, count: int, *, timeout_s: float = 10.0
) -> list[RawRecord]:
    """Records from ``getmany`` until ``count`` came, failing after ``timeout_s``."""
    records: list[RawRecord] = []
    with anyio.fail_after(timeout_s):
        while len(records) < count:
            batch = await port.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    return records


async def call_and_await(call: Callable[[], Any]) -> Any:
    """Call a sync or async port method alike."""
    result = call()
    return await result if isinstance(result, Awaitable) else result


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self.changed = anyio.Event()

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))
        self._notify()

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        with anyio.fail_after(timeout_s):
            while len(self.events) < count:
                await self.changed.wait()


def partitions(topic: str, numbers: Iterable[int]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, n) for n in numbers)


async def test_round_trip_keeps_key_value_headers_and_timestamp(
    kafka_bootstrap: str, unique: str
) -> None:
    """A sent record comes back whole: key, value, repeated headers in order, timestamp, offset."""
    topic = f"round-trip-{unique}"
    await create_topic(kafka_bootstrap, topic)
    headers = [("trace", b"1"), ("other", b""), ("trace", b"2")]
    async with started(AiokafkaProducer(bootstrap_servers=kafka_bootstrap)) as producer:
        delivery = await producer.send(
            topic, b"value", b"key", partition=2, timestamp_ms=PAST_TIMESTAMP_MS, headers=headers
        )
        metadata = await delivery
    assert metadata == RecordMetadata(topic, 2, 0, PAST_TIMESTAMP_MS, CREATE_TIME)

    async with started(consumer(kafka_bootstrap, f"group-{unique}")) as port:
        port.subscribe([topic])  # allowed after start too; before start is the normal order
        (record,) = await collect(port, 1)
    assert isinstance(record, ConsumerRecord)
    assert record.topic_partition == TopicPartition(topic, 2)
    assert (record.offset, record.key, record.value) == (0, b"key", b"value")
    assert (record.timestamp, record.timestamp_type) == (PAST_TIMESTAMP_MS, CREATE_TIME)
    assert record.headers == tuple(headers)
    assert (record.serialized_key_size, record.serialized_value_size) == (3, 5)


async def test_commit_is_read_back_and_resumed_by_the_next_group_member(
    kafka_bootstrap: str, unique: str
) -> None:
    """committed() returns what commit() stored, and a new consumer of the group starts there."""
    topic, group = f"commit-{unique}", f"group-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(kafka_bootstrap, topic, 5)

    first = consumer(kafka_bootstrap, group)
    first.subscribe([topic])
    async with started(first):
        assert await first.committed(tp) is None
        assert len(await collect(first, 5)) == 5
        await first.commit({tp: 3})
        assert await first.committed(tp) == 3

    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    async with started(second):
        assert await second.committed(tp) == 3
        assert await second.position(tp) == 3
        records = await collect(second, 2)
    assert [r.offset for r in records] == [3, 4]


async def test_rebalance_listener_sees_kstreams_partitions_revoked_before_assigned(
    kafka_bootstrap: str, unique: str
) -> None:
    """The listener gets frozensets of kstreams TopicPartitions; a join revokes, then assigns."""
    topic, group = f"rebalance-{unique}", f"group-{unique}"
    await create_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, 1)
    listener = RecordingListener()
    first = consumer(kafka_bootstrap, group)
    first.subscribe([topic], listener=listener)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(started(first))
        # The empty revocation aiokafka reports before the first join is not passed on.
        assert listener.events == [("assigned", partitions(topic, range(4)))]
        assert first.assignment() == partitions(topic, range(4))

        second = consumer(kafka_bootstrap, group)
        second.subscribe([topic])
        await stack.enter_async_context(started(second))
        await listener.wait_for(3)
        kept = first.assignment()
        assert listener.events[1] == ("revoked", partitions(topic, range(4)))
        assert listener.events[2] == ("assigned", kept)
        assert kept | second.assignment() == partitions(topic, range(4))
        assert len(kept) == 2
        assert all(type(tp) is TopicPartition for tp in kept)

    # aiokafka does not call on_partitions_revoked when the consumer stops.
    assert len(listener.events) == 3


async def test_consumer_without_group_reports_its_assignment_once(
    kafka_bootstrap: str, unique: str
) -> None:
    """Without a group every partition is assigned at start and the listener hears it once."""
    topic = f"no-group-{unique}"
    await create_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, 1)
    listener = RecordingListener()
    port = consumer(kafka_bootstrap)
    port.subscribe([topic], listener=listener)
    async with started(port):
        assert listener.events == [("assigned", partitions(topic, range(4)))]
        with pytest.raises(kerrors.IllegalOperationError):
            await port.commit({TopicPartition(topic, 0): 1})
        with pytest.raises(kerrors.IllegalOperationError):
            await port.committed(TopicPartition(topic, 0))
    assert len(listener.events) == 1


async def test_seek_moves_the_position_and_the_next_record(
    kafka_bootstrap: str, unique: str
) -> None:
    """seek sets position() and the first record getmany returns; unassigned seeks fail."""
    topic = f"seek-{unique}"
    await create_topic(kafka_bootstrap, topic)
    tp = TopicPartition(topic, 0)
    await produce(kafka_bootstrap, topic, 5)
    port = consumer(kafka_bootstrap)
    port.subscribe([topic])
    async with started(port):
        assert await port.position(tp) == 0
        port.seek(tp, 3)
        assert await port.position(tp) == 3
        assert [r.offset for r in await collect(port, 2)] == [3, 4]
        assert port.highwater(tp) == 5
        assert port.highwater(TopicPartition(topic, 9)) is None

        await port.seek_to_beginning(tp)
        assert await port.position(tp) == 0
        assert [r.value for r in await collect(port, 5)] == [b"0", b"1", b"2", b"3", b"4"]

        assert await port.beginning_offsets([tp]) == {tp: 0}
        assert await port.end_offsets([tp, TopicPartition(topic, 1)]) == {
            tp: 5,
            TopicPartition(topic, 1): 0,
        }

        missing = TopicPartition(f"not-subscribed-{unique}", 0)
        with pytest.raises(kerrors.IllegalStateError):
            port.seek(missing, 0)
        with pytest.raises(kerrors.IllegalStateError):
            await port.position(missing)
        with pytest.raises(kerrors.IllegalStateError):
            await port.seek_to_beginning(missing)
        with pytest.raises(kerrors.OffsetOutOfRangeError):
            port.seek(tp, -1)


@pytest.mark.broker_xfail(
    "tansu",
    raises=AssertionError,
    reason="Tansu answers ListOffsets 'latest' with the last batch's base offset + 1",
)
async def test_end_offsets_count_every_record_of_a_batch(kafka_bootstrap: str, unique: str) -> None:
    """end_offsets is one past the last record even when the records were sent as one batch."""
    topic = f"end-offsets-{unique}"
    tp = TopicPartition(topic, 0)
    async with started(
        AiokafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    ) as producer:
        deliveries = [await producer.send(topic, b"x", partition=0) for _ in range(10)]
        assert [(await d).offset for d in deliveries] == list(range(10))
    port = consumer(kafka_bootstrap)
    port.subscribe([topic])
    async with started(port):
        assert await port.end_offsets([tp]) == {tp: 10}


async def test_pause_holds_back_a_partition_until_resume(kafka_bootstrap: str, unique: str) -> None:
    """A paused partition returns nothing; after resume it continues at its position."""
    topic = f"pause-{unique}"
    await create_topic(kafka_bootstrap, topic)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await produce(kafka_bootstrap, topic, 3, partition=0)
    await produce(kafka_bootstrap, topic, 3, partition=1)
    port = consumer(kafka_bootstrap)
    port.subscribe([topic])
    async with started(port):
        port.pause(tp1)
        # Wait for one record of partition 0, so the rest of it is already fetched.
        with anyio.fail_after(10):
            batch: dict[TopicPartition, list[RawRecord]] = {}
            while not batch:
                batch = await port.getmany(timeout_ms=200, max_records=1)
        assert [(tp, [r.offset for r in rs]) for tp, rs in batch.items()] == [(tp0, [0])]
        port.pause(tp0)
        assert port.paused() == {tp0, tp1}
        assert await port.getmany(timeout_ms=300) == {}

        port.resume(tp0, tp1)
        assert port.paused() == frozenset()
        records = await collect(port, 5)
    assert [r.offset for r in records if r.partition == 0] == [1, 2]
    assert [r.offset for r in records if r.partition == 1] == [0, 1, 2]


async def test_pause_of_an_unassigned_partition_is_refused(
    kafka_bootstrap: str, unique: str
) -> None:
    """pause and resume name only assigned partitions."""
    topic = f"pause-unassigned-{unique}"
    await produce(kafka_bootstrap, topic, 1)
    port = consumer(kafka_bootstrap)
    port.subscribe([topic])
    async with started(port):
        with pytest.raises(kerrors.IllegalStateError):
            port.pause(TopicPartition(topic, 7))
        with pytest.raises(kerrors.IllegalStateError):
            port.resume(TopicPartition(f"other-{unique}", 0))
        assert port.paused() == frozenset()


async def test_no_committed_offset_with_reset_none_raises(
    kafka_bootstrap: str, unique: str
) -> None:
    """auto_offset_reset="none" and nothing committed: getmany raises NoOffsetForPartitionError."""
    topic = f"reset-none-{unique}"
    await produce(kafka_bootstrap, topic, 1)
    port = consumer(kafka_bootstrap, auto_offset_reset="none")
    port.subscribe([topic])
    async with started(port):
        with pytest.raises(kerrors.NoOffsetForPartitionError), anyio.fail_after(10):
            await collect(port, 1)


async def test_pattern_subscription_follows_matching_topics(
    kafka_bootstrap: str, unique: str
) -> None:
    """A pattern reads every matching topic, including one created after start, and no other."""
    prefix = f"pattern-{unique}"
    await produce(kafka_bootstrap, f"{prefix}-a", 1)
    await produce(kafka_bootstrap, f"{prefix}-b", 1)
    await produce(kafka_bootstrap, f"unrelated-{unique}", 1)
    port = consumer(kafka_bootstrap, f"group-{unique}", metadata_max_age_ms=300)
    port.subscribe(pattern=rf"{prefix}-.*")
    async with started(port):
        first = await collect(port, 2)
        # Committed, so the rebalance the new topic causes does not replay them.
        await port.commit({r.topic_partition: r.offset + 1 for r in first})
        await produce(kafka_bootstrap, f"{prefix}-c", 1)
        later = await collect(port, 1)
    assert sorted(r.topic for r in first) == [f"{prefix}-a", f"{prefix}-b"]
    assert [r.topic for r in later] == [f"{prefix}-c"]


async def test_consumer_raises_stopped_after_stop(kafka_bootstrap: str, unique: str) -> None:
    """After stop every consumer method but stop raises ConsumerStoppedError."""
    topic = f"stopped-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(kafka_bootstrap, topic, 1)
    port = consumer(kafka_bootstrap, f"group-{unique}")
    port.subscribe([topic])
    await port.start()
    await port.stop()
    await port.stop()  # idempotent

    calls: list[Callable[[], Any]] = [
        lambda: port.subscribe([topic]),
        port.start,
        lambda: port.getmany(timeout_ms=10),
        lambda: port.commit({tp: 1}),
        lambda: port.committed(tp),
        lambda: port.position(tp),
        lambda: port.seek(tp, 0),
        lambda: port.seek_to_beginning(tp),
        lambda: port.seek_to_end(),
        lambda: port.beginning_offsets([tp]),
        lambda: port.end_offsets([tp]),
        port.assignment,
        lambda: port.highwater(tp),
        lambda: port.pause(tp),
        lambda: port.resume(tp),
        port.paused,
    ]
    for call in calls:
        with pytest.raises(kerrors.ConsumerStoppedError):
            await call_and_await(call)


async def test_producer_raises_closed_after_stop(kafka_bootstrap: str, unique: str) -> None:
    """After stop send, flush, partitions_for and start raise ProducerClosedError."""
    topic = f"closed-{unique}"
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    pending = await producer.send(topic, b"last")
    await producer.stop()
    await producer.stop()  # idempotent
    assert (await pending).offset == 0  # stop delivered what was enqueued

    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: producer.send(topic, b"late"),
        producer.flush,
        lambda: producer.partitions_for(topic),
        producer.start,
    ]
    for call in calls:
        with pytest.raises(kerrors.ProducerClosedError):
            await call()


async def assert_start_fails_quickly(port: AiokafkaConsumer | AiokafkaProducer) -> None:
    began = time.monotonic()
    with pytest.raises(kerrors.KafkaConnectionError) as raised, anyio.fail_after(10):
        await port.start()
    assert time.monotonic() - began < 2.0
    assert raised.value.__cause__ is not None
    await port.stop()  # a failed start leaves nothing to close


def unreachable() -> dict[str, Any]:
    return {"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 500}


async def test_unreachable_broker_fails_consumer_start_quickly() -> None:
    """Consumer start() against a closed port raises KafkaConnectionError, not a hang."""
    await assert_start_fails_quickly(AiokafkaConsumer(group_id="unreachable", **unreachable()))


async def test_unreachable_broker_fails_producer_start_quickly() -> None:
    """Producer start() against a closed port raises KafkaConnectionError, not a hang."""
    await assert_start_fails_quickly(AiokafkaProducer(**unreachable()))


async def test_producer_errors_are_kstreams_errors(kafka_bootstrap: str, unique: str) -> None:
    """Unknown partitions, oversized records and empty records fail with kstreams errors."""
    topic = f"producer-errors-{unique}"
    await create_topic(kafka_bootstrap, topic)
    options = {"bootstrap_servers": kafka_bootstrap, "max_request_size": 2048}
    async with started(AiokafkaProducer(**options)) as producer:
        assert await producer.partitions_for(topic) == frozenset(range(4))
        with pytest.raises(kerrors.UnknownTopicOrPartitionError):
            await producer.send(topic, b"x", partition=4)
        with pytest.raises(kerrors.RecordTooLargeError):
            await producer.send(topic, b"x" * 4096)
        with pytest.raises(kerrors.IllegalOperationError):
            await producer.send(topic)
        await producer.flush()


async def test_acks_zero_resolves_without_an_offset(kafka_bootstrap: str, unique: str) -> None:
    """With acks=0 the metadata has offset -1, the requested partition (or -1) and a timestamp."""
    topic = f"acks-zero-{unique}"
    await create_topic(kafka_bootstrap, topic)
    async with started(AiokafkaProducer(bootstrap_servers=kafka_bootstrap, acks=0)) as producer:
        pinned = await (await producer.send(topic, b"a", partition=1, timestamp_ms=42))
        chosen = await (await producer.send(topic, b"b", b"key"))
    assert pinned == RecordMetadata(topic, 1, -1, 42, CREATE_TIME)
    assert (chosen.partition, chosen.offset) == (-1, -1)
    assert chosen.timestamp > 1_600_000_000_000


async def test_options_reach_the_client_with_auto_commit_forced_off(
    kafka_bootstrap: str, unique: str
) -> None:
    """Core-owned options are dropped, auto-commit is off, misspelled options are refused."""
    topic, group = f"options-{unique}", f"group-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(kafka_bootstrap, topic, 3)
    port = consumer(
        kafka_bootstrap,
        group,
        enable_auto_commit=True,
        auto_commit_interval_ms=1,
        value_deserializer=bytes.upper,
        max_poll_records=2,
    )
    port.subscribe([topic])
    async with started(port):
        batch = await port.getmany(timeout_ms=5000)
        assert [r.value for r in batch[tp]] == [b"0", b"1"]  # raw bytes, max_poll_records kept
    probe = consumer(kafka_bootstrap, group)  # not subscribed: no join to wait for
    async with started(probe):
        assert await probe.committed(tp) is None
    with pytest.raises(kerrors.UnknownOptionError):
        AiokafkaConsumer(group_id=None, bootstrap_server=kafka_bootstrap)


async def test_cancelled_start_closes_the_client(kafka_bootstrap: str, unique: str) -> None:
    """A start cancelled during the group join closes aiokafka's client and ends the consumer."""
    topic = f"cancelled-{unique}"
    await produce(kafka_bootstrap, topic, 1)
    port = consumer(kafka_bootstrap, f"group-{unique}")
    port.subscribe([topic])
    with anyio.move_on_after(0.2) as scope:
        await port.start()  # the join takes about half of session_timeout_ms
    assert scope.cancelled_caught
    with pytest.raises(kerrors.ConsumerStoppedError):
        await port.getmany(timeout_ms=10)
    await port.stop()
    gc.collect()  # an unclosed aiokafka client would warn here, and warnings are errors


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
async def test_a_stop_cut_short_by_its_bound_still_closes_the_sockets(
    kafka_bootstrap: str, unique: str
) -> None:
    """A stop cancelled by its caller's bound (as the stream's bounded close does) still
    closes the client's sockets and ends its background tasks."""
    topic = f"cut-short-{unique}"
    await produce(kafka_bootstrap, topic, 1)
    await anyio.sleep(0.1)
    before = open_files()
    port = consumer(kafka_bootstrap, f"group-{unique}")
    port.subscribe([topic])
    await port.start()
    assert len(await collect(port, 1)) == 1
    assert open_files() > before
    with anyio.move_on_after(0) as scope:
        await port.stop()  # cancelled at its first await: aiokafka's group leave
    assert scope.cancelled_caught
    await anyio.sleep(0.2)  # a transport closes its socket on the next loop turn
    assert open_files() == before
    gc.collect()  # an unclosed aiokafka connection would warn here, and warnings are errors


async def test_pattern_topic_created_after_start_is_consumed_within_seconds(
    kafka_bootstrap: str, unique: str
) -> None:
    """Without metadata_max_age_ms, a new topic matching the pattern is consumed within seconds."""
    prefix = f"pat-{unique}"
    await produce(kafka_bootstrap, f"{prefix}-a", 1)
    port = consumer(kafka_bootstrap, f"group-{unique}")
    port.subscribe(pattern=rf"{prefix}-.*")
    async with started(port):
        first = await collect(port, 1)
        await port.commit({r.topic_partition: r.offset + 1 for r in first})
        await produce(kafka_bootstrap, f"{prefix}-b", 1)
        began = time.monotonic()
        with anyio.fail_after(8):
            later = await collect(port, 1)
        assert time.monotonic() - began < 8
    assert [r.topic for r in later] == [f"{prefix}-b"]


async def test_start_with_no_broker_names_the_servers_within_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing listening and default timeouts, start() retries for a few seconds, logging
    each try at WARNING, then raises KafkaConnectionError naming the bootstrap servers."""
    nowhere = f"127.0.0.1:{free_port()}"
    reader = AiokafkaConsumer(group_id="g", bootstrap_servers=nowhere)
    reader.subscribe(["t"])
    for port in (reader, AiokafkaProducer(bootstrap_servers=nowhere)):
        began = time.monotonic()
        with pytest.raises(kerrors.KafkaConnectionError, match=nowhere):
            await port.start()
        assert time.monotonic() - began < 7
    retries = [r for r in caplog.records if "no broker reachable" in r.getMessage()]
    assert retries
    assert all(r.levelname == "WARNING" and nowhere in r.getMessage() for r in retries)


async def fetch_until(
    port: AiokafkaConsumer, condition: Callable[[], bool], within_s: float
) -> None:
    """getmany until ``condition``; bounded by ``within_s``."""
    with anyio.fail_after(within_s):
        while not condition():
            await port.getmany(timeout_ms=100)


async def test_connected_follows_the_broker_going_and_coming_back(unique: str) -> None:
    """connected() turns False within seconds of the broker dying and True once it is back."""
    topic = f"up-{unique}"
    with private_broker() as broker:
        await produce(broker.bootstrap, topic, 1)
        port = consumer(broker.bootstrap, f"group-{unique}")
        port.subscribe([topic])
        async with started(port):
            await collect(port, 1)
            assert port.connected()
            broker.kill()
            await fetch_until(port, lambda: not port.connected(), 20)
            broker.start()
            await fetch_until(port, port.connected, 20)


async def test_send_with_the_broker_gone_fails_as_a_connection_error(unique: str) -> None:
    """A send whose broker died fails with KafkaConnectionError (aiokafka's NodeNotReadyError)."""
    topic = f"gone-{unique}"
    with private_broker() as broker:
        async with started(
            AiokafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000)
        ) as producer:
            await (await producer.send(topic, b"first", partition=0))
            broker.kill()
            with pytest.raises(kerrors.KafkaConnectionError), anyio.fail_after(15):
                await (await producer.send(topic, b"late", partition=0))
