"""DeadLetterMiddleware on the memory backend: retries, back-off, the dead letter, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Mapping
from typing import Any

import pytest

from kstreams import (
    ConsumerRecord,
    DeadLetterMiddleware,
    GetMany,
    Middleware,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.dead_letter import (
    ATTEMPTS_HEADER,
    EXCEPTION_HEADER,
    MESSAGE_HEADER,
    OFFSET_HEADER,
    PARTITION_HEADER,
    TIMESTAMP_HEADER,
    TOPIC_HEADER,
)
from kstreams.exceptions import KafkaError
from kstreams.ports import ProducerPort
from kstreams.records import RecordMetadata


class JsonDecoder:
    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]:
        return dataclasses.replace(consumer_record, value=json.loads(consumer_record.value))


class Progress:
    """What a handler saw, with a way to wait for a condition on it."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, value: Any) -> None:
        self.values.append(value)
        self._changed.set()

    async def wait_for(self, predicate: Any, within: float = 5) -> None:
        async def reached() -> None:
            while not predicate(self.values):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), within)


def dlq(**options: Any) -> Middleware:
    return Middleware(DeadLetterMiddleware, **{"topic": "orders-dlq", "backoff_ms": 1, **options})


async def test_a_record_failing_every_retry_goes_to_the_dead_letter_topic_raw() -> None:
    """After 1 + retries attempts the record is produced to the DLQ as consumed (raw bytes,
    key, headers) with the error headers, and the stream goes on and commits past it."""
    cluster = MemoryCluster()
    cluster.append("orders", b'{"id": 1}', key=b"k1")
    cluster.append("orders", b'{"id": 2, "bad": true}', key=b"k2", headers=[("trace", b"t-2")])
    cluster.append("orders", b'{"id": 3}', key=b"k3")
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=JsonDecoder())
    progress = Progress()

    @engine.stream(
        "orders", group_id="billing", auto_offset_reset="earliest", middlewares=[dlq(retries=2)]
    )
    async def bill(cr: ConsumerRecord[bytes, dict[str, Any]]) -> None:
        progress.add(cr.value["id"])
        if cr.value.get("bad"):
            raise ValueError(f"cannot bill order {cr.value['id']}")

    await engine.start()
    await progress.wait_for(lambda values: 3 in values)
    await engine.stop()
    assert progress.values == [1, 2, 2, 2, 3]
    (dead,) = cluster.records(TopicPartition("orders-dlq", 0))
    assert dead.key == b"k2"
    assert dead.value == b'{"id": 2, "bad": true}'
    original = cluster.records(TopicPartition("orders", 0))[1]
    assert list(dead.headers) == [
        ("trace", b"t-2"),
        (EXCEPTION_HEADER, b"builtins.ValueError"),
        (MESSAGE_HEADER, b"cannot bill order 2"),
        (TOPIC_HEADER, b"orders"),
        (PARTITION_HEADER, b"0"),
        (OFFSET_HEADER, b"1"),
        (TIMESTAMP_HEADER, str(original.timestamp).encode()),
        (ATTEMPTS_HEADER, b"3"),
    ]
    assert cluster.committed("billing", TopicPartition("orders", 0)) == 3
    assert bill.error is None


async def test_a_record_that_succeeds_on_a_retry_is_not_dead_lettered() -> None:
    """A transient failure costs a retry, nothing more."""
    cluster = MemoryCluster()
    cluster.append("orders", b"1")
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders", group_id="billing", auto_offset_reset="earliest", middlewares=[dlq(retries=3)]
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        progress.add(cr.offset)
        if len(progress.values) < 3:
            raise ConnectionError("flaky")

    await engine.start()
    await progress.wait_for(lambda values: len(values) == 3)
    await engine.stop()
    assert "orders-dlq" not in cluster.topics()
    assert cluster.committed("billing", TopicPartition("orders", 0)) == 1


async def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    """The waits before retries are backoff_ms, doubling, at most max_backoff_ms."""
    cluster = MemoryCluster()
    cluster.append("orders", b"1")
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders",
        group_id="billing",
        auto_offset_reset="earliest",
        middlewares=[dlq(retries=5, backoff_ms=100, max_backoff_ms=500)],
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        progress.add(cr.offset)
        raise ValueError("always")

    waits: list[float] = []
    real_wait = bill.wait_for_stop

    async def recording_wait(timeout_s: float) -> bool:
        waits.append(timeout_s)
        return await real_wait(0)

    bill.wait_for_stop = recording_wait  # type: ignore[method-assign]
    await engine.start()
    await progress.wait_for(lambda values: len(values) == 6)
    await engine.stop()
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert len(cluster.records(TopicPartition("orders-dlq", 0))) == 1


class FailingTopicBackend:
    """Memory, except that producing to ``topic`` fails."""

    def __init__(self, cluster: MemoryCluster, topic: str) -> None:
        self.inner = Memory(cluster=cluster)
        self.topic = topic

    @property
    def name(self) -> str:
        return "memory"

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> Any:
        return self.inner.create_consumer(group_id=group_id, options=options)

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        inner = self.inner.create_producer(options)
        topic = self.topic

        class Producer:
            def __getattr__(self, attr: str) -> Any:
                return getattr(inner, attr)

            async def send(self, to: str, *args: Any, **kwargs: Any) -> Awaitable[RecordMetadata]:
                if to == topic:
                    raise KafkaError(f"{to} is not writable")
                return await inner.send(to, *args, **kwargs)

        return Producer()  # type: ignore[return-value]


async def test_a_failed_dead_letter_produce_applies_the_policy_and_loses_nothing() -> None:
    """If the DLQ cannot be written, the error propagates: the policy applies and the record
    stays uncommitted, to be read again."""
    cluster = MemoryCluster()
    cluster.append("orders", b"0")
    cluster.append("orders", b"1")
    engine = create_engine(backend=FailingTopicBackend(cluster, "orders-dlq"))
    progress = Progress()

    @engine.stream(
        "orders",
        group_id="billing",
        auto_offset_reset="earliest",
        middlewares=[dlq(retries=1)],
        error_policy=StreamErrorPolicy.STOP,
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        progress.add(cr.offset)
        if cr.offset == 0:
            raise ValueError("bad order")

    await engine.start()
    await progress.wait_for(lambda values: len(values) == 2)
    await engine.stop()
    assert progress.values == [0, 0]
    assert isinstance(bill.error, KafkaError)
    assert isinstance(bill.error.__context__, ValueError)
    assert cluster.committed("billing", TopicPartition("orders", 0)) is None


async def test_a_failing_batch_is_retried_whole_then_every_record_is_dead_lettered() -> None:
    """With get_many the batch is the unit: retried, then all its records go to the DLQ."""
    cluster = MemoryCluster()
    for i in range(5):
        cluster.append("orders", b"%d" % i, key=b"k%d" % i)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders",
        group_id="billing",
        auto_offset_reset="earliest",
        get_many=GetMany(max_records=3),
        middlewares=[dlq(retries=1)],
    )
    async def bill(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        offsets = [cr.offset for cr in crs]
        progress.add(offsets)
        if 1 in offsets:
            raise ValueError("bulk insert failed")

    await engine.start()
    await progress.wait_for(lambda values: [3, 4] in values)
    await engine.stop()
    assert progress.values == [[0, 1, 2], [0, 1, 2], [3, 4]]
    dead = cluster.records(TopicPartition("orders-dlq", 0))
    assert [(r.key, r.value) for r in dead] == [(b"k0", b"0"), (b"k1", b"1"), (b"k2", b"2")]
    assert [dict(r.headers)[OFFSET_HEADER] for r in dead] == [b"0", b"1", b"2"]
    assert cluster.committed("billing", TopicPartition("orders", 0)) == 5


async def test_stopping_during_a_back_off_is_prompt_and_leaves_the_record_unhandled() -> None:
    """stop() interrupts a long back-off; the record is neither dead-lettered nor committed."""
    cluster = MemoryCluster()
    cluster.append("orders", b"0")
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders",
        group_id="billing",
        auto_offset_reset="earliest",
        middlewares=[dlq(retries=3, backoff_ms=60_000)],
    )
    async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
        progress.add(cr.offset)
        raise ValueError("down")

    await engine.start()
    await progress.wait_for(lambda values: len(values) == 1)
    await asyncio.wait_for(engine.stop(), 2)
    assert "orders-dlq" not in cluster.topics()
    assert cluster.committed("billing", TopicPartition("orders", 0)) is None


async def test_a_record_dead_lettered_twice_keeps_only_the_latest_error_headers() -> None:
    """Reprocessing a dead letter that fails again replaces its kstreams.dlq.* headers."""
    cluster = MemoryCluster()
    cluster.append(
        "orders-dlq",
        b"x",
        headers=[("trace", b"t"), (EXCEPTION_HEADER, b"old.Error"), (ATTEMPTS_HEADER, b"9")],
    )
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders-dlq",
        group_id="replay",
        auto_offset_reset="earliest",
        middlewares=[dlq(topic="orders-dlq-2", retries=0)],
    )
    async def replay(cr: ConsumerRecord[bytes, bytes]) -> None:
        progress.add(cr.offset)
        raise KeyError("still bad")

    await engine.start()
    await progress.wait_for(lambda values: len(values) == 1)
    await engine.stop()
    (dead,) = cluster.records(TopicPartition("orders-dlq-2", 0))
    headers = list(dead.headers)
    assert headers[0] == ("trace", b"t")
    assert [value for name, value in headers if name == EXCEPTION_HEADER] == [b"builtins.KeyError"]
    assert [value for name, value in headers if name == ATTEMPTS_HEADER] == [b"1"]


def test_options_are_checked_where_the_middleware_is_declared() -> None:
    """A missing topic, a negative count and a misspelled option fail at once."""
    with pytest.raises(TypeError, match="topic"):
        Middleware(DeadLetterMiddleware)
    with pytest.raises(ValueError, match="topic name"):
        Middleware(DeadLetterMiddleware, topic="")
    with pytest.raises(ValueError, match="retries"):
        Middleware(DeadLetterMiddleware, topic="dlq", retries=-1)
    with pytest.raises(TypeError, match="retires"):
        Middleware(DeadLetterMiddleware, topic="dlq", retires=3)
    assert Middleware(DeadLetterMiddleware, topic="dlq", retries=0).kwargs == {
        "topic": "dlq",
        "retries": 0,
    }


async def test_a_deserialized_batch_is_dead_lettered_as_consumed() -> None:
    """With get_many and a deserializer, each dead letter carries the raw bytes it was read as."""
    cluster = MemoryCluster()
    for i in range(3):
        cluster.append("orders", b"%d" % i, key=b"k%d" % i)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Progress()

    @engine.stream(
        "orders",
        group_id="billing",
        auto_offset_reset="earliest",
        get_many=GetMany(max_records=3),
        value_deserializer=lambda raw: int(raw) * 100,
        middlewares=[dlq(retries=0)],
    )
    async def bill(crs: list[ConsumerRecord[bytes, int]]) -> None:
        progress.add([cr.value for cr in crs])
        raise ValueError("bulk insert failed")

    await engine.start()
    await progress.wait_for(lambda values: len(values) == 1)
    await engine.stop()
    assert progress.values == [[0, 100, 200]]
    dead = cluster.records(TopicPartition("orders-dlq", 0))
    assert [(r.key, r.value) for r in dead] == [(b"k0", b"0"), (b"k1", b"1"), (b"k2", b"2")]
