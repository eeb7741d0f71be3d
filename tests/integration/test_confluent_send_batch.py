"""confluent send_many: the delivery callbacks come from a pool reused from batch to batch."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kstreams import BatchEvent, create_engine
from kstreams.backends import Confluent
from kstreams.exceptions import RecordTooLargeError
from kstreams.records import RecordMetadata
from tests.broker import create_topic

pytestmark = pytest.mark.integration


async def _values_by_offset(bootstrap: str, topic: str, count: int) -> dict[int, bytes]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    try:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        values: dict[int, bytes] = {}
        with anyio.fail_after(20):
            while len(values) < count:
                batch = await reader.getmany(partition, timeout_ms=500)
                values.update((r.offset, r.value) for r in batch.get(partition, []))
        return values
    finally:
        await reader.stop()


async def test_concurrent_and_consecutive_send_many_each_get_their_own_records_metadata(
    kafka_bootstrap: str, unique: str
) -> None:
    """Three send_many at once, then three more one after the other (reusing the callbacks
    of the first): each result is its own records', in order, at the offsets holding them."""
    topic = f"pool-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    engine = create_engine(backend=Confluent(bootstrap_servers=kafka_bootstrap))
    batches = [[f"b{b}-{n}".encode() for n in range(400 + 50 * b)] for b in range(6)]
    await engine.start()
    try:
        with anyio.fail_after(30):
            results = list(
                await asyncio.gather(
                    *(
                        engine.send_many(topic, [BatchEvent(value=v) for v in values])
                        for values in batches[:3]
                    )
                )
            )
            for values in batches[3:]:
                results.append(await engine.send_many(topic, [BatchEvent(value=v) for v in values]))
    finally:
        await engine.stop()
    total = sum(len(values) for values in batches)
    stored = await _values_by_offset(kafka_bootstrap, topic, total)
    offsets: list[int] = []
    for values, metadata in zip(batches, results, strict=True):
        assert all(isinstance(m, RecordMetadata) for m in metadata)
        assert [stored[m.offset] for m in metadata] == values
        assert {(m.topic, m.partition) for m in metadata} == {(topic, 0)}
        offsets += [m.offset for m in metadata]
    assert sorted(offsets) == list(range(total))


async def test_send_many_after_a_failed_one_reports_the_right_records(
    kafka_bootstrap: str, unique: str
) -> None:
    """A send_many failing midway gives its callbacks back too: the next batch's metadata
    are its own records'."""
    topic = f"pool-fail-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    engine = create_engine(
        backend=Confluent(bootstrap_servers=kafka_bootstrap),
        producer_options={"max_request_size": 1000},
    )
    await engine.start()
    try:
        with pytest.raises(RecordTooLargeError):
            await engine.send_many(
                topic, [BatchEvent(value=b"a"), BatchEvent(value=b"x" * 5000), BatchEvent(b"c")]
            )
        values = [f"after-{n}".encode() for n in range(200)]
        with anyio.fail_after(20):
            metadata = await engine.send_many(topic, [BatchEvent(value=v) for v in values])
    finally:
        await engine.stop()
    stored = await _values_by_offset(kafka_bootstrap, topic, 201)
    assert [stored[m.offset] for m in metadata] == values
    assert [m.offset for m in metadata] == list(range(1, 201))
