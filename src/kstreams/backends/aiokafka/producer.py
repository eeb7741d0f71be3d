"""The producer port on aiokafka's AIOKafkaProducer."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Generator
from typing import Any

import aiokafka

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.closing import close_shielded
from kstreams.backends.aiokafka.errors import CLIENT_ERRORS, start_client, translate
from kstreams.backends.aiokafka.transactional import AiokafkaTransactions
from kstreams.options import PRODUCER_OPTIONS, check_options
from kstreams.records import CREATE_TIME, Headers, RecordMetadata


class _Delivery:
    """Awaitable result of ``send``: aiokafka's future, resolved to kstreams metadata."""

    __slots__ = ("_future", "_partition", "_timestamp_ms", "_topic")

    def __init__(self, future: Any, topic: str, partition: int, timestamp_ms: int) -> None:
        self._future = future
        self._topic = topic
        self._partition = partition
        self._timestamp_ms = timestamp_ms

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        try:
            metadata = yield from self._future.__await__()
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        if metadata is None:
            # acks=0: the broker answers nothing, so no offset is known; like the
            # Java client, report offset -1 (and partition -1 if the partitioner chose).
            return RecordMetadata(self._topic, self._partition, -1, self._timestamp_ms, CREATE_TIME)
        timestamp = metadata.timestamp
        return RecordMetadata(
            metadata.topic,
            metadata.partition,
            metadata.offset,
            -1 if timestamp is None else timestamp,
            metadata.timestamp_type,
        )


class AiokafkaProducer(AiokafkaTransactions):
    def __init__(self, **aiokafka_producer_kwargs: Any) -> None:
        check_options("AiokafkaProducer", aiokafka_producer_kwargs, PRODUCER_OPTIONS)
        self._options = aiokafka_producer_kwargs
        self._acks_zero = aiokafka_producer_kwargs.get("acks") == 0
        self._client: Any = None
        self._stopped = False
        # aiokafka's send() waits while its partition's batch is full, and
        # every sender waiting there wakes up when the batch drains, to find
        # the next batch full again but for ~150 of them. So one send is in
        # aiokafka at a time: the others queue here (arguments and a future
        # for aiokafka's delivery), and the sender inside aiokafka enqueues
        # them when it gets out, in their order, without waking each one's task
        # first (which let the batches go out with a few records each).
        self._queued: deque[tuple[tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._sending = False

    def _running(self) -> Any:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ProducerClosedError("the producer was stopped")
            raise kerrors.IllegalStateError("the producer is not started")
        return client

    async def start(self) -> None:
        if self._stopped:
            raise kerrors.ProducerClosedError("the producer was stopped")
        if self._client is not None:
            raise kerrors.IllegalStateError("the producer is already started")
        try:
            self._client = await start_client(
                "aiokafka producer",
                lambda: aiokafka.AIOKafkaProducer(**self._options),
                self._options,
            )
        except BaseException:
            self._stopped = True
            raise

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._stopped = True
        if client is None:
            return
        try:
            try:
                await client.flush()
            finally:
                await close_shielded(client)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> Awaitable[RecordMetadata]:
        client = self._client
        if client is None:
            client = self._running()
        if value is None and key is None:
            raise kerrors.IllegalOperationError(
                "aiokafka cannot send a record without key and value"
            )
        try:
            if partition is not None and partition not in await client.partitions_for(topic):
                # aiokafka would only assert.
                raise kerrors.UnknownTopicOrPartitionError(f"{topic} has no partition {partition}")
            # aiokafka's C record builder takes only a list.
            record = (topic, value, key, partition, timestamp_ms, list(headers))
            if self._sending or self._queued:
                waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._queued.append((record, waiter))
                try:
                    future = await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled() and waiter.result() is None:
                        self._hand_over()  # cancelled just as its turn came
                    raise
                if future is None:  # the sender left: this one sends, and serves the queue
                    future = await self._send_in_turn(client, record)
            else:
                future = await self._send_in_turn(client, record)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        if self._acks_zero and timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        return _Delivery(
            future,
            topic,
            -1 if partition is None else partition,
            -1 if timestamp_ms is None else timestamp_ms,
        )

    async def _send_in_turn(self, client: Any, record: tuple[Any, ...]) -> Any:
        """Send ``record``, then the records queued meanwhile; aiokafka's future of ``record``."""
        self._sending = True
        queued = self._queued
        try:
            future = await client.send(*record)
            # Only those queued by now: with senders that keep coming, serving
            # until the queue is empty could keep this caller here for ever.
            turns = len(queued)
            while queued and turns:
                turns -= 1
                other, waiter = queued[0]
                if waiter.done():  # its sender was cancelled: not sent, as aiokafka's send
                    queued.popleft()
                    continue
                try:
                    delivery = await client.send(*other)
                except asyncio.CancelledError:
                    raise  # this task was cancelled: ``other`` was not enqueued, and stays first
                except Exception as exc:
                    queued.popleft()
                    if not waiter.done():
                        waiter.set_exception(exc)
                    continue
                queued.popleft()
                if waiter.done():
                    # Cancelled while aiokafka took it: it is sent all the same,
                    # as a cancelled wait for an enqueued record's delivery.
                    continue
                waiter.set_result(delivery)
            return future
        finally:
            self._sending = False
            self._hand_over()

    def _hand_over(self) -> None:
        # Leaving with records queued (the sender was cancelled or failed):
        # the first one still waiting takes over.
        queued = self._queued
        while queued:
            _record, waiter = queued[0]
            if not waiter.done():
                waiter.set_result(None)
                return
            queued.popleft()

    async def flush(self) -> None:
        client = self._running()
        try:
            await client.flush()
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def partitions_for(self, topic: str) -> frozenset[int]:
        client = self._running()
        try:
            partitions = await client.partitions_for(topic)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return frozenset(partitions)
