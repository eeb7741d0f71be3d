"""The features where a broker matters, the same on every backend: send_many, GetMany commits,
initial offsets, the dead-letter round trip, and RESTART resuming from the committed offset."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

import pytest

from kstreams import (
    BatchEvent,
    ConsumerRecord,
    DeadLetterMiddleware,
    GetMany,
    Middleware,
    StreamErrorPolicy,
    TopicPartitionOffset,
)
from kstreams.dead_letter import EXCEPTION_HEADER, MESSAGE_HEADER, OFFSET_HEADER, TOPIC_HEADER
from kstreams.exceptions import KafkaError
from tests.conformance.conftest import Collector, Harness
from tests.conformance.test_conformance import first_offset_seen, produce


async def test_send_many_enqueues_the_batch_before_awaiting_it(
    harness: Harness, unique: str, collector: Collector
) -> None:
    """send_many with linger_ms=300 takes about one linger, not one per record, and every
    record arrives in order with its key and headers."""
    topic = f"many-{unique}"
    await harness.create_topic(topic, 1)
    engine = harness.engine(producer_options={"linger_ms": 300})

    @engine.stream(topic, group_id=f"g-{unique}", **harness.options())
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        collector.add(cr)

    await engine.start()
    events = [
        BatchEvent(value=b"v%d" % i, key=b"k%d" % i, headers={"i": str(i)}) for i in range(20)
    ]
    began = time.monotonic()
    metadata = await engine.send_many(topic, events, partition=0)
    elapsed = time.monotonic() - began
    # One awaited round trip per record would take at least 20 x 300 ms.
    assert elapsed < 3.0, f"send_many took {elapsed:.2f}s for 20 records"
    assert [m.offset for m in metadata] == list(range(20))
    assert {m.partition for m in metadata} == {0}
    records = await collector.wait_for(20)
    assert [(r.key, r.value) for r in records] == [(e.key, e.value) for e in events]
    assert [list(r.headers) for r in records] == [[("i", b"%d" % i)] for i in range(20)]


async def test_producer_options_reach_the_client(
    harness: Harness, unique: str, collector: Collector
) -> None:
    """acks, compression and linger given to create_engine produce records that read back."""
    topic = f"opts-{unique}"
    await harness.create_topic(topic, 1)
    engine = harness.engine(
        producer_options={"acks": "all", "compression_type": "gzip", "linger_ms": 5}
    )

    @engine.stream(topic, group_id=f"g-{unique}", **harness.options())
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        collector.add(cr)

    await engine.start()
    await engine.send(topic, value=b"x" * 1000, key=b"k")
    (record,) = await collector.wait_for(1)
    assert (record.key, record.value) == (b"k", b"x" * 1000)


async def test_an_idempotent_producer_round_trip(
    harness: Harness, unique: str, collector: Collector, request: pytest.FixtureRequest
) -> None:
    """enable_idempotence=True reaches the client, which produces records that read back."""
    if harness.name == "aiokafka" and harness.broker == "tansu":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                raises=KafkaError,
                reason="Tansu fails aiokafka's InitProducerId request (UnknownError)",
            )
        )
    topic = f"idem-{unique}"
    await harness.create_topic(topic, 1)
    engine = harness.engine(producer_options={"enable_idempotence": True, "acks": "all"})

    @engine.stream(topic, group_id=f"g-{unique}", **harness.options())
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        collector.add(cr)

    await engine.start()
    await engine.send(topic, value=b"once")
    (record,) = await collector.wait_for(1)
    assert record.value == b"once"


async def test_get_many_commits_the_batches_handled_and_none_of_the_failing_one(
    harness: Harness, unique: str
) -> None:
    """A GetMany handler's batch is committed only after it returned: when a batch fails, the
    group resumes at that batch's first record."""
    topic, group = f"batch-{unique}", f"g-{unique}"
    await harness.create_topic(topic, 1)
    await produce(harness, topic, [b"%d" % i for i in range(10)])
    engine = harness.engine()
    batches: list[list[int]] = []
    failed = asyncio.Event()

    @engine.stream(
        topic,
        group_id=group,
        get_many=GetMany(max_records=4, timeout_ms=200),
        error_policy=StreamErrorPolicy.STOP,
        **harness.options(),
    )
    async def bulk(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        offsets = [cr.offset for cr in crs]
        batches.append(offsets)
        if 5 in offsets:
            failed.set()
            raise RuntimeError("bulk insert failed")

    await engine.start()
    await asyncio.wait_for(failed.wait(), 20)
    await engine.stop()
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert [o for batch in batches for o in batch] == list(range(batches[-1][-1] + 1))
    failing_batch_start = batches[-1][0]
    assert failing_batch_start > 0
    assert await first_offset_seen(harness, topic, group) == failing_batch_start


async def test_initial_offsets_choose_where_each_partition_starts(
    harness: Harness, unique: str, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """initial_offsets seek each assigned partition on the first assignment; an offset for a
    partition the stream does not get is logged, not applied."""
    topic = f"init-{unique}"
    await harness.create_topic(topic, 2)
    producer = harness.engine(title="producer")
    await producer.start()
    for partition in (0, 1):
        await producer.send_many(
            topic, [BatchEvent(value=b"%d-%d" % (partition, i)) for i in range(5)], partition
        )
    await producer.stop()
    engine = harness.engine()

    @engine.stream(
        topic,
        group_id=f"g-{unique}",
        initial_offsets=[
            TopicPartitionOffset(topic, 0, 3),
            TopicPartitionOffset(topic, 1, 1),
            TopicPartitionOffset(topic, 9, 0),
        ],
        **harness.options(),
    )
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        collector.add(cr)

    with caplog.at_level(logging.WARNING, logger="kstreams.streams"):
        await engine.start()
        await collector.wait_for(6)
    assert sorted((r.partition, r.offset) for r in collector.records) == [
        (0, 3),
        (0, 4),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "kstreams.streams"]
    assert any("partition=9" in w and "not assigned" in w for w in warnings), warnings


class JsonDecoder:
    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]:
        return dataclasses.replace(consumer_record, value=json.loads(consumer_record.value))


async def test_dead_letter_round_trip(harness: Harness, unique: str) -> None:
    """A record failing every retry lands in the dead-letter topic as consumed (raw bytes, key,
    headers) plus the error headers; the stream goes on and commits past it."""
    topic, dlq_topic, group = f"orders-{unique}", f"orders-dlq-{unique}", f"g-{unique}"
    await harness.create_topic(topic, 1)
    await harness.create_topic(dlq_topic, 1)
    engine = harness.engine(deserializer=JsonDecoder())
    handled = Collector()
    dead = Collector()

    @engine.stream(
        topic,
        group_id=group,
        middlewares=[Middleware(DeadLetterMiddleware, topic=dlq_topic, retries=2, backoff_ms=10)],
        **harness.options(),
    )
    async def bill(cr: ConsumerRecord[bytes, dict[str, Any]]) -> None:
        if cr.value.get("bad"):
            raise ValueError(f"cannot bill {cr.value['id']}")
        handled.add(cr)

    # deserializer=None: the dead letters are read raw, whatever the engine's default.
    @engine.stream(dlq_topic, group_id=f"dlq-{unique}", deserializer=None, **harness.options())
    async def inspect(cr: ConsumerRecord[bytes, bytes]) -> None:
        dead.add(cr)

    await engine.start()
    await engine.send(topic, value=b'{"id": 1}', key=b"k1")
    await engine.send(topic, value=b'{"id": 2, "bad": true}', key=b"k2", headers={"trace": "t2"})
    await engine.send(topic, value=b'{"id": 3}', key=b"k3")
    await handled.wait_for(2)
    (letter,) = await dead.wait_for(1)
    await engine.stop()
    assert [r.value["id"] for r in handled.records] == [1, 3]
    assert (letter.key, letter.value) == (b"k2", b'{"id": 2, "bad": true}')
    headers = dict(letter.headers)
    assert headers["trace"] == b"t2"
    assert headers[EXCEPTION_HEADER] == b"builtins.ValueError"
    assert headers[MESSAGE_HEADER] == b"cannot bill 2"
    assert headers[TOPIC_HEADER] == topic.encode()
    assert headers[OFFSET_HEADER] == b"1"
    await produce(harness, topic, [b'{"id": 4}'])
    assert await first_offset_seen(harness, topic, group) == 3


async def test_restart_policy_skips_the_failing_record(harness: Harness, unique: str) -> None:
    """RESTART recreates the consumer, which resumes after the failed record (skipped, as kpn
    documents it) and reads none of the ones handled before it again."""
    topic, group = f"restart-{unique}", f"g-{unique}"
    await harness.create_topic(topic, 1)
    await produce(harness, topic, [b"%d" % i for i in range(5)])
    engine = harness.engine()
    attempts = Collector()

    @engine.stream(
        topic, group_id=group, error_policy=StreamErrorPolicy.RESTART, **harness.options()
    )
    async def flaky(cr: ConsumerRecord[bytes, bytes]) -> None:
        attempts.add(cr)
        if cr.offset == 2:
            raise ConnectionError("dependency away")

    await engine.start()
    await attempts.wait_for(5, within=30)
    await engine.stop()
    assert attempts.offsets == [0, 1, 2, 3, 4]
    assert isinstance(flaky.error, ConnectionError)
    await produce(harness, topic, [b"5"])
    assert await first_offset_seen(harness, topic, group) == 5
