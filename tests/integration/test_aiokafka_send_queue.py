"""Concurrent sends on the aiokafka adapter: one inside aiokafka, the rest queued in order."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from kstreams.backends.aiokafka import AiokafkaProducer
from kstreams.records import RecordMetadata
from tests.broker import create_topic

pytestmark = pytest.mark.integration

#: Small batches, so that sends queue behind a full batch after a few records.
SMALL_BATCH = {"max_batch_size": 1024}


async def _send(producer: AiokafkaProducer, topic: str, value: bytes) -> RecordMetadata:
    return await (await producer.send(topic, value, partition=0))


async def test_gathered_sends_land_in_the_order_they_were_called(
    kafka_bootstrap: str, unique: str
) -> None:
    """1,500 sends gathered at once, batches full most of the time: offsets follow the calls."""
    topic = f"send-order-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, **SMALL_BATCH)
    await producer.start()
    try:
        with anyio.fail_after(30):
            results = await asyncio.gather(
                *(_send(producer, topic, str(i).encode()) for i in range(1500))
            )
    finally:
        await producer.stop()
    assert [metadata.offset for metadata in results] == list(range(1500))


async def test_cancelled_senders_leave_the_others_delivered(
    kafka_bootstrap: str, unique: str
) -> None:
    """Cancelling the sender inside aiokafka and some queued ones: every other send completes."""
    topic = f"send-cancel-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, **SMALL_BATCH)
    await producer.start()
    try:
        tasks = [asyncio.create_task(_send(producer, topic, str(i).encode())) for i in range(400)]
        # Let them run into the full batches, then cancel a spread of them,
        # among them whichever is inside aiokafka at that moment.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        cancelled = set(range(0, 400, 7))
        for index in cancelled:
            tasks[index].cancel()
        with anyio.fail_after(30):
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        # The producer still serves new sends after the cancellations.
        with anyio.fail_after(10):
            last = await _send(producer, topic, b"last")
    finally:
        await producer.stop()
    for index, outcome in enumerate(outcomes):
        if index not in cancelled:
            assert isinstance(outcome, RecordMetadata), (index, outcome)
        else:
            assert isinstance(outcome, RecordMetadata | asyncio.CancelledError)
    delivered = [outcome.offset for outcome in outcomes if isinstance(outcome, RecordMetadata)]
    assert delivered == sorted(delivered)
    assert last.offset > max(delivered)


async def test_the_sender_inside_returns_while_others_keep_sending(
    kafka_bootstrap: str, unique: str
) -> None:
    """Ten tasks sending one record after another (each yielding between two): the sender
    inside serves only the sends queued before it got out, so none of them is held there."""
    topic = f"send-fair-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, **SMALL_BATCH)
    await producer.start()
    sent = [0] * 10
    enough = asyncio.Event()

    async def keep_sending(task: int) -> None:
        while not enough.is_set():
            await producer.send(topic, b"x" * 400, partition=0)  # two to a batch
            sent[task] += 1
            if sum(sent) >= 3000:
                enough.set()
            await asyncio.sleep(0)  # a handler's other awaits

    try:
        with anyio.fail_after(60):
            await asyncio.gather(*(keep_sending(task) for task in range(10)))
    finally:
        await producer.stop()
    # Held inside, a task would have sent once or twice while the others sent thousands.
    assert min(sent) >= 3000 // 10 // 4, sent
