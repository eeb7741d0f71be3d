"""The confluent backend's adapters on a real broker, port by port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from kstreams import BatchEvent, create_engine
from kstreams.backends import Confluent
from kstreams.backends.confluent import ConfluentConsumer, ConfluentProducer
from kstreams.backends.confluent import consumer as loop_side
from kstreams.backends.confluent import consumer_thread as thread_side
from kstreams.exceptions import (
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    KafkaConnectionError,
    NoOffsetForPartitionError,
    ProducerClosedError,
    RecordTooLargeError,
)
from kstreams.ports import RawRecord
from kstreams.records import CREATE_TIME, TopicPartition
from tests.broker import PAST_TIMESTAMP_MS, create_topic, free_port, group_timings
from tests.integration.private_broker import private_broker

pytestmark = pytest.mark.integration

# Short fetch long-polls so seeks and offset queries are not queued behind them;
# the group timings are the broker's (group_timings).
GROUP_TIMINGS = {"fetch_max_wait_ms": 100}


def consumer(bootstrap: str, group_id: str | None, **options: Any) -> ConfluentConsumer:
    options = {
        "auto_offset_reset": "earliest",
        **group_timings(bootstrap),
        **GROUP_TIMINGS,
        **options,
    }
    return ConfluentConsumer(group_id=group_id, bootstrap_servers=bootstrap, **options)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[ConfluentProducer]:
    producer = ConfluentProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    yield producer
    await producer.stop()


async def produce(producer: ConfluentProducer, topic: str, count: int, partition: int = 0) -> None:
    pending = [
        await producer.send(topic, f"v{n}".encode(), key=f"k{n}".encode(), partition=partition)
        for n in range(count)
    ]
    await asyncio.gather(*pending)


async def drain(
    consumer: ConfluentConsumer, count: int, *, within_s: float = 20.0
) -> list[RawRecord]:
    """getmany until ``count`` records came; fail past the deadline."""
    records: list[RawRecord] = []
    deadline = time.monotonic() + within_s
    while len(records) < count:
        assert time.monotonic() < deadline, f"only {len(records)} of {count} records came"
        batch = await consumer.getmany(timeout_ms=200)
        records += [record for partition in sorted(batch) for record in batch[partition]]
    return records


async def until(condition: Callable[[], bool], *consumers: ConfluentConsumer) -> None:
    """Drive the consumers' fetches (which serve rebalances) until ``condition``; bounded."""
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in 20 s"
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))


class Listener:
    """Records rebalances, and commits and reads positions inside them."""

    def __init__(self) -> None:
        self.consumer: ConfluentConsumer | None = None
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self.positions: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int | None] = {}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        assert self.consumer is not None
        positions = {tp: await self.consumer.position(tp) for tp in revoked}
        await self.consumer.commit(positions)
        self.positions.update(positions)
        self.events.append(("revoked", revoked))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        assert self.consumer is not None
        for tp in assigned:
            self.committed[tp] = await self.consumer.committed(tp)
            await self.consumer.position(tp)
        self.events.append(("assigned", assigned))


async def test_round_trip_keeps_key_value_headers_and_timestamp(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A record comes back with its key, value, repeated headers and create timestamp."""
    topic = f"round-trip-{unique}"
    await create_topic(kafka_bootstrap, topic)
    headers = [("trace", b"1"), ("trace", b"2"), ("kind", b"")]
    delivered = await producer.send(
        topic, b"value", key=b"key", partition=1, timestamp_ms=PAST_TIMESTAMP_MS, headers=headers
    )
    metadata = await delivered
    assert (metadata.topic, metadata.partition, metadata.offset) == (topic, 1, 0)
    assert (metadata.timestamp, metadata.timestamp_type) == (PAST_TIMESTAMP_MS, CREATE_TIME)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        (record,) = await drain(reader, 1)
        assert (record.topic, record.partition, record.offset) == (topic, 1, 0)
        assert (record.key, record.value, tuple(record.headers)) == (
            b"key",
            b"value",
            tuple(headers),
        )
        assert (record.timestamp, record.timestamp_type) == (PAST_TIMESTAMP_MS, CREATE_TIME)
        assert (record.serialized_key_size, record.serialized_value_size) == (3, 5)
        assert reader.highwater(TopicPartition(topic, 1)) == 1
    finally:
        await reader.stop()


async def test_commit_is_where_a_new_consumer_resumes(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """Offsets committed by one consumer are where the next one of the group starts."""
    topic, group = f"resume-{unique}", f"g-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(producer, topic, 5)
    first = consumer(kafka_bootstrap, group)
    first.subscribe([topic])
    await first.start()
    try:
        assert [r.offset for r in await drain(first, 5)] == [0, 1, 2, 3, 4]
        assert await first.committed(tp) is None
        await first.commit({tp: 3})
        assert await first.committed(tp) == 3
    finally:
        await first.stop()
    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    await second.start()
    try:
        assert [r.offset for r in await drain(second, 2)] == [3, 4]
        assert await second.position(tp) == 5
    finally:
        await second.stop()


@pytest.mark.broker_xfail(
    "noida",
    raises=AssertionError,
    reason="noida-db answers a commit made during a rebalance (the revoke callback's) with "
    "ILLEGAL_GENERATION, and the group then does not settle",
)
async def test_listener_commits_inside_revoke_without_deadlock(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A listener that commits and reads positions in a rebalance runs, and its commit is seen."""
    topic, group = f"rebalance-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic)
    for partition in range(4):
        await produce(producer, topic, 3, partition=partition)
    listener = Listener()
    first = consumer(kafka_bootstrap, group)
    listener.consumer = first
    first.subscribe([topic], listener=listener)
    await first.start()
    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    try:
        await drain(first, 12)
        assert [kind for kind, _ in listener.events] == ["assigned"]
        everything = listener.events[0][1]
        assert len(everything) == 4
        assert all(offset is None for offset in listener.committed.values())
        await second.start()
        await until(lambda: bool(second.assignment()) and len(listener.events) >= 3, first, second)
        assert [kind for kind, _ in listener.events][:3] == ["assigned", "revoked", "assigned"]
        assert listener.events[1][1] == everything
        assert listener.positions == {tp: 3 for tp in everything}
        assert first.assignment() | second.assignment() == everything
        assert not first.assignment() & second.assignment()
        for tp in second.assignment():
            assert await second.committed(tp) == 3
    finally:
        await second.stop()
        await first.stop()


async def test_seek_moves_the_position(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """seek makes the offset the next record returned, and position reports it."""
    topic = f"seek-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(producer, topic, 6)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        await drain(reader, 6)
        assert await reader.position(tp) == 6
        reader.seek(tp, 2)
        assert await reader.position(tp) == 2
        assert [r.offset for r in await drain(reader, 4)] == [2, 3, 4, 5]
        await reader.seek_to_beginning(tp)
        assert await reader.position(tp) == 0
        assert (await drain(reader, 1))[0].offset == 0
        assert await reader.beginning_offsets([tp]) == {tp: 0}
        with pytest.raises(IllegalStateError):
            reader.seek(TopicPartition(topic, 99), 0)
    finally:
        await reader.stop()


async def test_seek_inside_on_assigned_takes_effect(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A seek made by the listener right after assignment is where fetching starts."""
    topic = f"seek-assign-{unique}"
    await create_topic(kafka_bootstrap, topic)
    tp = TopicPartition(topic, 2)
    await produce(producer, topic, 5, partition=2)

    class SeekOnAssign:
        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
            reader.seek(tp, 3)

    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic], listener=SeekOnAssign())
    await reader.start()
    try:
        assert [r.offset for r in await drain(reader, 2)] == [3, 4]
    finally:
        await reader.stop()


async def create_topics(bootstrap: str, *topics: str) -> None:
    """Single-partition topics, made before anyone subscribes to them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1) for topic in topics])
    finally:
        await admin.close()


async def test_positions_read_right_after_assignment_hold_on_every_partition(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """Positions resolved ("latest") right after assignment are where every partition is read."""
    topics = tuple(f"pos-{name}-{unique}" for name in "abcd")
    await create_topics(kafka_bootstrap, *topics)
    everything = {TopicPartition(topic, 0) for topic in topics}
    reader = consumer(kafka_bootstrap, f"g-{unique}", auto_offset_reset="latest")
    reader.subscribe(topics)
    await reader.start()
    try:
        await until(lambda: reader.assignment() == everything, reader)
        assert {tp: await reader.position(tp) for tp in sorted(everything)} == {
            tp: 0 for tp in everything
        }
        for topic in topics:
            await produce(producer, topic, 1)
        records = await drain(reader, len(topics), within_s=5)
        assert {(r.topic_partition, r.offset) for r in records} == {(tp, 0) for tp in everything}
    finally:
        await reader.stop()


async def test_paused_partition_returns_nothing_until_resumed(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A paused partition yields no records; after resume the next one is at the position."""
    topic = f"pause-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(producer, topic, 10)
    reader = consumer(kafka_bootstrap, f"g-{unique}", max_poll_records=3)
    reader.subscribe([topic])
    await reader.start()
    try:
        assert [r.offset for r in await drain(reader, 3)] == [0, 1, 2]
        reader.pause(tp)
        assert reader.paused() == {tp}
        assert await reader.getmany(timeout_ms=500) == {}
        reader.resume(tp)
        assert reader.paused() == frozenset()
        assert [r.offset for r in await drain(reader, 7)] == [3, 4, 5, 6, 7, 8, 9]
    finally:
        await reader.stop()


async def test_no_group_assigns_every_partition_and_cannot_commit(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """Without a group_id all partitions are assigned at start, and commits are refused."""
    topic = f"nogroup-{unique}"
    await create_topic(kafka_bootstrap, topic)
    await produce(producer, topic, 2, partition=3)
    reader = consumer(kafka_bootstrap, None)
    reader.subscribe([topic])
    await reader.start()
    try:
        assert reader.assignment() == {TopicPartition(topic, p) for p in range(4)}
        assert [r.offset for r in await drain(reader, 2)] == [0, 1]
        with pytest.raises(IllegalOperationError):
            await reader.commit({TopicPartition(topic, 3): 2})
        with pytest.raises(IllegalOperationError):
            await reader.committed(TopicPartition(topic, 3))
    finally:
        await reader.stop()


async def test_reset_none_without_commit_raises(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """auto_offset_reset='none' and no commit: getmany raises NoOffsetForPartitionError."""
    topic = f"reset-none-{unique}"
    await produce(producer, topic, 1)
    reader = consumer(kafka_bootstrap, f"g-{unique}", auto_offset_reset="none")
    reader.subscribe([topic])
    await reader.start()
    try:
        with pytest.raises(NoOffsetForPartitionError):
            await drain(reader, 1)
    finally:
        await reader.stop()


async def test_every_call_after_stop_raises(kafka_bootstrap: str, unique: str) -> None:
    """After stop every consumer and producer call raises the stopped error; stop is idempotent."""
    topic = f"stopped-{unique}"
    tp = TopicPartition(topic, 0)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    await reader.stop()
    await reader.stop()
    for call in (
        lambda: reader.getmany(timeout_ms=0),
        lambda: reader.commit({tp: 1}),
        lambda: reader.committed(tp),
        lambda: reader.position(tp),
        lambda: reader.seek_to_beginning(),
        lambda: reader.seek_to_end(),
        lambda: reader.beginning_offsets([tp]),
        lambda: reader.end_offsets([tp]),
        reader.start,
    ):
        with pytest.raises(ConsumerStoppedError):
            await call()
    for sync_call in (
        lambda: reader.seek(tp, 0),
        lambda: reader.pause(tp),
        lambda: reader.resume(tp),
        reader.assignment,
        reader.paused,
        lambda: reader.highwater(tp),
    ):
        with pytest.raises(ConsumerStoppedError):
            sync_call()
    writer = ConfluentProducer(bootstrap_servers=kafka_bootstrap)
    await writer.start()
    await writer.stop()
    await writer.stop()
    for producer_call in (
        lambda: writer.send(topic, b"v"),
        writer.flush,
        lambda: writer.partitions_for(topic),
        writer.start,
    ):
        with pytest.raises(ProducerClosedError):
            await producer_call()


async def test_unreachable_broker_fails_start_quickly(unique: str) -> None:
    """start() raises KafkaConnectionError once request_timeout_ms passes with no broker."""
    nowhere = f"127.0.0.1:{free_port()}"
    reader = ConfluentConsumer(
        group_id=f"g-{unique}", bootstrap_servers=nowhere, request_timeout_ms=1000
    )
    reader.subscribe([f"t-{unique}"])
    began = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await reader.start()
    writer = ConfluentProducer(bootstrap_servers=nowhere, request_timeout_ms=1000)
    with pytest.raises(KafkaConnectionError):
        await writer.start()
    assert time.monotonic() - began < 5
    with pytest.raises(ConsumerStoppedError):
        await reader.getmany(timeout_ms=0)


async def test_full_producer_queue_waits_instead_of_failing(
    kafka_bootstrap: str, unique: str
) -> None:
    """With a one-message local queue, send waits for the previous delivery and none fail."""
    topic = f"backpressure-{unique}"
    writer = ConfluentProducer(
        bootstrap_servers=kafka_bootstrap, extra_config={"queue.buffering.max.messages": 1}
    )
    await writer.start()
    try:
        pending = [await writer.send(topic, b"warm-up", partition=0)]
        for n in range(20):
            sent = await writer.send(topic, f"v{n}".encode(), partition=0)
            # Room in a one-message queue means the one before was delivered.
            assert pending[-1].done()
            pending.append(sent)
        offsets = [metadata.offset for metadata in await asyncio.gather(*pending)]
        assert offsets == list(range(21))
    finally:
        await writer.stop()


async def test_oversized_record_is_rejected(kafka_bootstrap: str, unique: str) -> None:
    """A record above max_request_size raises RecordTooLargeError."""
    writer = ConfluentProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1000)
    await writer.start()
    try:
        with pytest.raises(RecordTooLargeError):
            await writer.send(f"big-{unique}", b"x" * 5000)
    finally:
        await writer.stop()


async def test_keyed_records_land_where_aiokafka_puts_them(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A keyed record without a partition lands where aiokafka's murmur2 partitioner puts it."""
    topic = f"keys-{unique}"
    await create_topic(kafka_bootstrap, topic)
    partitions = sorted(await producer.partitions_for(topic))
    assert len(partitions) == 4
    for number in range(40):
        key = f"user-{number}".encode()
        metadata = await (await producer.send(topic, b"v", key=key))
        assert metadata.partition == DefaultPartitioner()(key, partitions, partitions)


@pytest.mark.broker_xfail(
    "tansu",
    raises=AssertionError,
    reason="Tansu answers ListOffsets 'latest' with the last batch's base offset + 1 "
    "(end_offsets, seek_to_end)",
)
async def test_end_offsets_and_seek_to_end(kafka_bootstrap: str, unique: str) -> None:
    """end_offsets is the next offset to be written; seek_to_end moves the position there."""
    topic = f"end-{unique}"
    tp = TopicPartition(topic, 0)
    # Lingering puts the four records in one batch, the case real Kafka and Tansu disagree on.
    batching = ConfluentProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200)
    await batching.start()
    try:
        await produce(batching, topic, 4)
    finally:
        await batching.stop()
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        await drain(reader, 1)
        assert await reader.end_offsets([tp]) == {tp: 4}
        await reader.seek_to_end(tp)
        assert await reader.position(tp) == 4
    finally:
        await reader.stop()


class Recording:
    """A thin proxy around the real Consumer that notes the thread of every call."""

    def __init__(self, real: Any, calls: list[tuple[str, int]]) -> None:
        self._real = real
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, threading.get_ident()))
            return attribute(*args, **kwargs)

        return call


@pytest.mark.broker_xfail(
    "noida",
    raises=AssertionError,
    reason="noida-db answers a commit made during a rebalance (the revoke callback's) with "
    "ILLEGAL_GENERATION, and the group then does not settle",
)
async def test_one_worker_thread_makes_every_consumer_call(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every librdkafka consumer call, callbacks and close included, runs on one non-loop thread."""
    calls: dict[int, list[tuple[str, int]]] = {}
    real_consumer = thread_side.Consumer

    def recording_consumer(*args: Any, **kwargs: Any) -> Recording:
        recorded = calls.setdefault(len(calls), [])
        return Recording(real_consumer(*args, **kwargs), recorded)

    monkeypatch.setattr(thread_side, "Consumer", recording_consumer)
    topic, group = f"threads-{unique}", f"g-{unique}"
    tp = TopicPartition(topic, 0)
    await produce(producer, topic, 4)
    listener = Listener()
    first = consumer(kafka_bootstrap, group)
    listener.consumer = first
    first.subscribe([topic], listener=listener)
    await first.start()
    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    try:
        await drain(first, 4)
        await first.commit({tp: 4})
        assert await first.committed(tp) == 4
        first.pause(tp)
        # Applied by the worker as the state is when it runs: let the pause land
        # before resuming, or both jobs would resume.
        await first.getmany(timeout_ms=100)
        first.resume(tp)
        first.seek(tp, 1)
        assert await first.position(tp) == 1
        await first.beginning_offsets([tp])
        await second.start()
        await until(lambda: any(kind == "revoked" for kind, _ in listener.events), first, second)
        await until(lambda: bool(second.assignment()), first, second)
    finally:
        await second.stop()
        await first.stop()
    loop_thread = threading.get_ident()
    assert len(calls) == 2
    for recorded in calls.values():
        threads = {thread for _name, thread in recorded}
        assert len(threads) == 1
        assert loop_thread not in threads
    assert calls[0][0][1] != calls[1][0][1]
    names = {name for name, _thread in calls[0]}
    assert {
        "list_topics",
        "subscribe",
        "consume",
        "assign",
        "unassign",
        "commit",
        "committed",
        "pause",
        "resume",
        "seek",
        "get_watermark_offsets",
        "close",
    } <= names


async def test_pattern_subscription_reads_matching_topics(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A pattern subscription reads every topic the regex matches from its start."""
    await produce(producer, f"pattern-{unique}-a", 1)
    await produce(producer, f"pattern-{unique}-b", 1)
    await produce(producer, f"other-{unique}", 1)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe(pattern=f"pattern-{unique}-.*")
    await reader.start()
    try:
        records = await drain(reader, 2)
        assert sorted(r.topic for r in records) == [f"pattern-{unique}-a", f"pattern-{unique}-b"]
        assert await reader.getmany(timeout_ms=300) == {}
    finally:
        await reader.stop()


async def test_stop_ends_a_waiting_getmany(kafka_bootstrap: str, unique: str) -> None:
    """stop() does not wait for a long getmany to time out: the getmany returns empty."""
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([f"idle-{unique}"])
    await reader.start()
    waiting = asyncio.create_task(reader.getmany(timeout_ms=30_000))
    await asyncio.sleep(0.3)  # let the fetch start waiting on the worker
    began = time.monotonic()
    await reader.stop()
    assert await waiting == {}
    assert time.monotonic() - began < 2


async def test_a_stuck_listener_does_not_stall_the_rebalance_forever(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that never returns is abandoned after half of max_poll_interval_ms, and logged."""
    topic = f"stuck-{unique}"
    await produce(producer, topic, 2)
    never = asyncio.Event()

    class Stuck:
        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
            await never.wait()

    # librdkafka wants max_poll_interval_ms >= session_timeout_ms, which some brokers keep >= 6 s.
    poll_ms = max(2000, group_timings(kafka_bootstrap)["session_timeout_ms"])
    reader = consumer(kafka_bootstrap, f"g-{unique}", max_poll_interval_ms=poll_ms)
    reader.subscribe([topic], listener=Stuck())
    await reader.start()
    try:
        began = time.monotonic()
        assert [r.offset for r in await drain(reader, 2)] == [0, 1]
        assert time.monotonic() - began >= poll_ms / 2000
        assert f"on_partitions_assigned did not return within {poll_ms / 2000:.1f} s" in caplog.text
    finally:
        await reader.stop()


async def test_a_hanging_close_is_bounded(
    kafka_bootstrap: str,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If librdkafka's close() hangs, stop() gives up after the bound, logs, and still stops."""
    release = threading.Event()
    real_consumer = thread_side.Consumer

    class HangingClose(Recording):
        def close(self) -> None:
            release.wait(10)
            self._real.close()

    monkeypatch.setattr(loop_side, "CLOSE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(
        thread_side, "Consumer", lambda *a, **k: HangingClose(real_consumer(*a, **k), [])
    )
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([f"hang-{unique}"])
    await reader.start()
    began = time.monotonic()
    try:
        await reader.stop()
        assert 0.5 <= time.monotonic() - began < 2
        assert "did not return within" in caplog.text
        with pytest.raises(ConsumerStoppedError):
            await reader.getmany(timeout_ms=0)
    finally:
        release.set()


def gate_consume(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every consumer's ``consume`` wait for the first event (set: open) before it
    calls librdkafka, and set the second once a call returned messages."""
    gate, fetched = threading.Event(), threading.Event()
    gate.set()
    real_consumer = thread_side.Consumer

    class GatedConsume(Recording):
        def consume(self, *args: Any, **kwargs: Any) -> Any:
            gate.wait(10)
            messages = self._real.consume(*args, **kwargs)
            if messages:
                fetched.set()
            return messages

    monkeypatch.setattr(
        thread_side, "Consumer", lambda *a, **k: GatedConsume(real_consumer(*a, **k), [])
    )
    return gate, fetched


async def test_records_of_a_cancelled_getmany_come_with_the_next(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records a cancelled getmany already took from librdkafka are returned by the next one."""
    gate, _ = gate_consume(monkeypatch)
    topic = f"cancelled-{unique}"
    await produce(producer, topic, 3)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        assert [r.offset for r in await drain(reader, 3)] == [0, 1, 2]
        gate.clear()
        waiting = asyncio.create_task(reader.getmany(timeout_ms=10_000))
        await produce(producer, topic, 2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.set()
        assert [r.offset for r in await drain(reader, 2)] == [3, 4]
    finally:
        gate.set()
        await reader.stop()


async def test_records_of_a_getmany_cancelled_after_its_fetch_returned_come_with_the_next(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A getmany cancelled once librdkafka had handed its messages over (the fetch done, the
    loop not yet resumed): the next getmany returns them, in order."""
    gate, fetched = gate_consume(monkeypatch)
    topic = f"cancelled-late-{unique}"
    await produce(producer, topic, 3)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        assert [r.offset for r in await drain(reader, 3)] == [0, 1, 2]
        gate.clear()
        fetched.clear()
        waiting = asyncio.create_task(reader.getmany(timeout_ms=10_000))
        await produce(producer, topic, 2)
        gate.set()
        # Blocks the loop until the worker has the messages: the getmany cannot resume first.
        assert fetched.wait(10)
        time.sleep(0.05)  # noqa: ASYNC251 - the loop must not run while the fetch completes
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert [r.offset for r in await drain(reader, 2)] == [3, 4]
    finally:
        gate.set()
        await reader.stop()


async def test_producer_applies_serializers_partitioner_and_flush(
    kafka_bootstrap: str, unique: str
) -> None:
    """aiokafka-style serializers and a custom partitioner are applied; flush settles every send."""
    topic = f"custom-{unique}"
    await create_topic(kafka_bootstrap, topic)
    seen: list[tuple[bytes | None, list[int], list[int]]] = []

    def last_partition(key: bytes | None, every: list[int], available: list[int]) -> int:
        seen.append((key, every, available))
        return every[-1]

    writer = ConfluentProducer(
        bootstrap_servers=kafka_bootstrap,
        key_serializer=lambda key: None if key is None else key.upper(),
        value_serializer=lambda value: b"<" + (value or b"") + b">",
        partitioner=last_partition,
    )
    await writer.start()
    try:
        pending = [await writer.send(topic, b"v%d" % n, key=b"k%d" % n) for n in range(5)]
        await writer.flush()
        assert all(sent.done() for sent in pending)
        assert {(await sent).partition for sent in pending} == {3}
        assert seen[0] == (b"K0", [0, 1, 2, 3], [0, 1, 2, 3])
    finally:
        await writer.stop()
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        records = await drain(reader, 5)
        assert [(r.key, r.value) for r in records][:2] == [(b"K0", b"<v0>"), (b"K1", b"<v1>")]
    finally:
        await reader.stop()


async def test_subscribed_topic_created_after_start_is_consumed_within_seconds(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A subscribed topic that did not exist at start is consumed within a few seconds of its
    first record, with the default metadata_max_age_ms (5 min)."""
    topic = f"late-{unique}"
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        await reader.getmany(timeout_ms=1000)
        await produce(producer, topic, 1)
        began = time.monotonic()
        (record,) = await drain(reader, 1, within_s=8)
        assert record.topic == topic
        assert time.monotonic() - began < 8
    finally:
        await reader.stop()


async def test_pattern_topic_created_after_start_is_consumed_within_seconds(
    kafka_bootstrap: str, unique: str, producer: ConfluentProducer
) -> None:
    """A topic created after start that the pattern matches is consumed within a few seconds,
    with the default metadata_max_age_ms (5 min)."""
    await produce(producer, f"pat-{unique}-a", 1)
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe(pattern=f"pat-{unique}-.*")
    await reader.start()
    try:
        first = await drain(reader, 1)
        assert [r.topic for r in first] == [f"pat-{unique}-a"]
        # Committed, so the rebalance the new topic causes does not replay it.
        await reader.commit({r.topic_partition: r.offset + 1 for r in first})
        await produce(producer, f"pat-{unique}-b", 1)
        began = time.monotonic()
        (record,) = await drain(reader, 1, within_s=8)
        assert record.topic == f"pat-{unique}-b"
        assert time.monotonic() - began < 8
    finally:
        await reader.stop()


async def wait_for(
    condition: Callable[[], bool], reader: ConfluentConsumer, within_s: float
) -> float:
    """Fetch (which drives the client) until ``condition``; the seconds it took; bounded."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within_s, f"not reached within {within_s} s"
        await reader.getmany(timeout_ms=100)
    return time.monotonic() - began


async def test_start_with_no_broker_names_the_servers_within_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing listening and default timeouts, start() raises KafkaConnectionError naming
    the bootstrap servers within a few seconds, logging each retry at WARNING."""
    nowhere = f"127.0.0.1:{free_port()}"
    reader = ConfluentConsumer(group_id="g", bootstrap_servers=nowhere)
    reader.subscribe(["t"])
    writer = ConfluentProducer(bootstrap_servers=nowhere)
    for port in (reader, writer):
        began = time.monotonic()
        with pytest.raises(KafkaConnectionError, match=nowhere):
            await port.start()
        assert time.monotonic() - began < 7
    retries = [r for r in caplog.records if "no broker reachable" in r.getMessage()]
    assert retries
    assert all(r.levelname == "WARNING" and nowhere in r.getMessage() for r in retries)


async def test_connected_follows_the_broker_going_and_coming_back(unique: str) -> None:
    """connected() turns False within seconds of the broker dying and True once it is back."""
    with private_broker() as broker:
        writer = ConfluentProducer(bootstrap_servers=broker.bootstrap)
        await writer.start()
        await produce(writer, f"up-{unique}", 1)
        await writer.stop()
        reader = consumer(broker.bootstrap, f"g-{unique}")
        reader.subscribe([f"up-{unique}"])
        await reader.start()
        try:
            await drain(reader, 1)
            assert reader.connected()
            broker.kill()
            down_after = await wait_for(lambda: not reader.connected(), reader, 20)
            broker.start()
            up_after = await wait_for(reader.connected, reader, 20)
        finally:
            await reader.stop()
    assert down_after < 20
    assert up_after < 20


async def test_send_with_the_broker_gone_fails_as_a_connection_error(unique: str) -> None:
    """A send whose broker died fails with KafkaConnectionError, as on aiokafka."""
    with private_broker() as broker:
        writer = ConfluentProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000)
        await writer.start()
        try:
            await produce(writer, f"gone-{unique}", 1)
            broker.kill()
            began = time.monotonic()
            with pytest.raises(KafkaConnectionError):
                await (await writer.send(f"gone-{unique}", b"late", partition=0))
            assert time.monotonic() - began < 10
        finally:
            await writer.stop()


async def test_send_many_is_one_batch_delivering_what_came_before_a_failure(
    kafka_bootstrap: str, unique: str
) -> None:
    """engine.send_many on confluent resolves every record in order through one batch; a record
    too large to enqueue raises, after the records before it were delivered."""
    topic = f"batch-{unique}"
    engine = create_engine(
        backend=Confluent(bootstrap_servers=kafka_bootstrap),
        producer_options={"max_request_size": 1000},
    )
    await engine.start()
    try:
        metadata = await engine.send_many(
            topic, [BatchEvent(value=f"v{n}".encode()) for n in range(50)], partition=0
        )
        assert [m.offset for m in metadata] == list(range(50))
        events = [BatchEvent(value=b"ok-0"), BatchEvent(value=b"x" * 5000), BatchEvent(value=b"no")]
        with pytest.raises(RecordTooLargeError):
            await engine.send_many(topic, events, partition=0)
    finally:
        await engine.stop()
    reader = consumer(kafka_bootstrap, f"g-{unique}")
    reader.subscribe([topic])
    await reader.start()
    try:
        values = [r.value for r in await drain(reader, 51)]
        assert await reader.getmany(timeout_ms=500) == {}
    finally:
        await reader.stop()
    assert values[-1] == b"ok-0"
    assert b"no" not in values


async def test_send_many_larger_than_the_client_queue_waits_for_room(
    kafka_bootstrap: str, unique: str
) -> None:
    """A batch larger than librdkafka's local queue is enqueued as deliveries make room."""
    topic = f"room-{unique}"
    engine = create_engine(
        backend=Confluent(
            bootstrap_servers=kafka_bootstrap, extra_config={"queue.buffering.max.messages": 10}
        )
    )
    await engine.start()
    try:
        events = [BatchEvent(value=f"v{n}".encode()) for n in range(300)]
        with anyio.fail_after(20):
            metadata = await engine.send_many(topic, events, partition=0)
    finally:
        await engine.stop()
    assert [m.offset for m in metadata] == list(range(300))
