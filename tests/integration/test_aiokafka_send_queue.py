"""Concurrent sends on the aiokafka adapter: one inside aiokafka, the rest queued in order
(``send``, and ``send_and_wait``, whose queued senders wait there until delivered)."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from kstreams.backends.aiokafka import AiokafkaProducer
from kstreams.exceptions import RecordTooLargeError
from kstreams.records import RecordMetadata
from tests.broker import create_topic

pytestmark = pytest.mark.integration

#: Small batches, so that sends queue behind a full batch after a few records.
SMALL_BATCH = {"max_batch_size": 1024}


async def _send(producer: AiokafkaProducer, topic: str, value: bytes) -> RecordMetadata:
    return await (await producer.send(topic, value, partition=0))


async def _send_and_wait(producer: AiokafkaProducer, topic: str, value: bytes) -> RecordMetadata:
    return await producer.send_and_wait(topic, value, partition=0)


SENDERS = {"send": _send, "send_and_wait": _send_and_wait}


@pytest.mark.parametrize("via", ["send", "send_and_wait"])
async def test_gathered_sends_land_in_the_order_they_were_called(
    via: str, kafka_bootstrap: str, unique: str
) -> None:
    """1,500 sends (or send_and_wait, queued until delivered) gathered at once, batches full
    most of the time: each returns its own record's metadata, offsets in call order."""
    send = SENDERS[via]
    topic = f"send-order-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, **SMALL_BATCH)
    await producer.start()
    try:
        with anyio.fail_after(30):
            results = await asyncio.gather(
                *(send(producer, topic, str(i).encode()) for i in range(1500))
            )
    finally:
        await producer.stop()
    assert all(isinstance(metadata, RecordMetadata) for metadata in results)
    assert [metadata.offset for metadata in results] == list(range(1500))
    assert {(metadata.topic, metadata.partition) for metadata in results} == {(topic, 0)}


@pytest.mark.parametrize("via", ["send", "send_and_wait"])
async def test_cancelled_senders_leave_the_others_delivered(
    via: str, kafka_bootstrap: str, unique: str
) -> None:
    """Cancelling the sender inside aiokafka and some queued ones (of send, or send_and_wait):
    every other send completes, and the producer serves new sends afterwards."""
    send = SENDERS[via]
    topic = f"send-cancel-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, **SMALL_BATCH)
    await producer.start()
    try:
        tasks = [asyncio.create_task(send(producer, topic, str(i).encode())) for i in range(400)]
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
            last = await send(producer, topic, b"last")
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


async def test_a_queued_send_and_wait_too_large_fails_alone_with_the_kstreams_error(
    kafka_bootstrap: str, unique: str
) -> None:
    """One record over max_request_size among 600 gathered: it raises RecordTooLargeError
    (translated, wherever it waited), and the others are delivered in order."""
    topic = f"saw-large-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(
        bootstrap_servers=kafka_bootstrap, max_request_size=4096, **SMALL_BATCH
    )
    await producer.start()
    values = [b"x" * 10_000 if i == 450 else str(i).encode() for i in range(600)]
    try:
        with anyio.fail_after(30):
            outcomes = await asyncio.gather(
                *(_send_and_wait(producer, topic, value) for value in values),
                return_exceptions=True,
            )
    finally:
        await producer.stop()
    assert isinstance(outcomes[450], RecordTooLargeError), outcomes[450]
    delivered = [outcome for index, outcome in enumerate(outcomes) if index != 450]
    assert [metadata.offset for metadata in delivered] == list(range(599))  # type: ignore[union-attr]


async def test_send_and_wait_with_acks_zero_reports_no_offset_and_the_send_time(
    kafka_bootstrap: str, unique: str
) -> None:
    """acks=0: every send_and_wait, queued or not, returns offset -1, the partition it was
    sent to and a timestamp taken when it was sent, as send's delivery does."""
    topic = f"saw-acks0-{unique}"
    await create_topic(kafka_bootstrap, topic)
    producer = AiokafkaProducer(bootstrap_servers=kafka_bootstrap, acks=0, **SMALL_BATCH)
    await producer.start()
    before = int(time.time() * 1000)
    try:
        with anyio.fail_after(30):
            results = await asyncio.gather(
                *(_send_and_wait(producer, topic, str(i).encode()) for i in range(300))
            )
    finally:
        await producer.stop()
    after = int(time.time() * 1000)
    assert {(m.topic, m.partition, m.offset) for m in results} == {(topic, 0, -1)}
    assert all(before <= m.timestamp <= after for m in results)
