"""The producer port on aiokafka's AIOKafkaProducer."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Generator
from typing import Any, cast

import aiokafka

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.closing import close_shielded
from kstreams.backends.aiokafka.errors import CLIENT_ERRORS, start_client, translate
from kstreams.backends.aiokafka.transactional import AiokafkaTransactions
from kstreams.options import PRODUCER_OPTIONS, check_options
from kstreams.records import CREATE_TIME, Headers, RecordMetadata

#: aiokafka's send() arguments: topic, value, key, partition, timestamp_ms, headers.
_Record = tuple[Any, ...]
#: Topic, partition and timestamp of a record, for metadata aiokafka leaves out (acks=0).
_Where = tuple[str, int, int]


def _metadata(metadata: Any, where: _Where | None) -> RecordMetadata:
    """kstreams metadata from aiokafka's; None with acks=0, where ``where`` is given."""
    if metadata is None:
        # acks=0: the broker answers nothing, so no offset is known; like the
        # Java client, report offset -1 (and partition -1 if the partitioner chose).
        topic, partition, timestamp_ms = cast(_Where, where)
        return RecordMetadata(topic, partition, -1, timestamp_ms, CREATE_TIME)
    timestamp = metadata.timestamp
    return RecordMetadata(
        metadata.topic,
        metadata.partition,
        metadata.offset,
        -1 if timestamp is None else timestamp,
        metadata.timestamp_type,
    )


class _Delivery:
    """Awaitable result of ``send``: aiokafka's future, resolved to kstreams metadata."""

    __slots__ = ("_future", "_where")

    def __init__(self, future: Any, where: _Where | None) -> None:
        self._future = future
        self._where = where

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        try:
            metadata = yield from self._future.__await__()
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return _metadata(metadata, self._where)


class _Settle:
    """Resolves a queued ``send_and_wait``'s waiter from aiokafka's delivery future
    (with its error as aiokafka raised it: the waiting sender translates it).
    One object, where a ``functools.partial`` is three for the collector."""

    __slots__ = ("_waiter", "_where")

    def __init__(self, waiter: asyncio.Future[Any], where: _Where | None) -> None:
        self._waiter = waiter
        self._where = where

    def __call__(self, delivery: Any) -> None:
        waiter = self._waiter
        if delivery.cancelled():
            if not waiter.done():
                waiter.cancel()
            return
        error = delivery.exception()
        if waiter.done():  # its sender was cancelled while waiting for the delivery
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(_metadata(delivery.result(), self._where))


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
        # A sender of send_and_wait waits there until its record is delivered
        # (``settle``), with what its metadata needs for acks=0 (``where``).
        self._queued: deque[tuple[_Record, asyncio.Future[Any], bool, _Where | None]] = deque()
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
        client = self._sendable(value, key)
        try:
            if partition is not None:
                await self._check_partition(client, topic, partition)
            # aiokafka's C record builder takes only a list (and makes one for None).
            record = (topic, value, key, partition, timestamp_ms, list(headers) or None)
            future = await self._queue_up(record) if self._sending or self._queued else None
            if future is None:  # nobody inside aiokafka, or the sender left: this one sends
                future = await self._send_in_turn(client, record)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return _Delivery(future, self._where(topic, partition, timestamp_ms))

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> RecordMetadata:
        # As send, then await; with as few objects per record in flight as can
        # be (each one is work for the garbage collector while it waits).
        client = self._sendable(value, key)
        where = self._where(topic, partition, timestamp_ms)
        try:
            if partition is not None:
                await self._check_partition(client, topic, partition)
            record = (topic, value, key, partition, timestamp_ms, list(headers) or None)
            if self._sending or self._queued:
                # Queued, its waiter resolves once the record is delivered: the
                # sender's task wakes up once instead of twice (enqueued, delivered).
                outcome = await self._queue_up(record, settle=True, where=where)
                if outcome is not None:
                    return cast(RecordMetadata, outcome)
            metadata = await (await self._send_in_turn(client, record))
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return _metadata(metadata, where)

    def _sendable(self, value: bytes | None, key: bytes | None) -> Any:
        client = self._client
        if client is None:
            client = self._running()
        if value is None and key is None:
            raise kerrors.IllegalOperationError(
                "aiokafka cannot send a record without key and value"
            )
        return client

    @staticmethod
    async def _check_partition(client: Any, topic: str, partition: int) -> None:
        if partition not in await client.partitions_for(topic):
            # aiokafka would only assert.
            raise kerrors.UnknownTopicOrPartitionError(f"{topic} has no partition {partition}")

    def _where(self, topic: str, partition: int | None, timestamp_ms: int | None) -> _Where | None:
        """What the metadata says where aiokafka tells nothing (acks=0); None otherwise."""
        if not self._acks_zero:
            return None
        return (
            topic,
            -1 if partition is None else partition,
            int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        )

    async def _queue_up(
        self, record: _Record, *, settle: bool = False, where: _Where | None = None
    ) -> Any:
        """Wait behind the sender inside aiokafka until it enqueues ``record``: aiokafka's
        future of it (with ``settle``, the record's metadata once delivered), or None if the
        sender left first (the caller then sends in turn)."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((record, waiter, settle, where))
        try:
            return await waiter
        except asyncio.CancelledError:
            if (
                waiter.done()
                and not waiter.cancelled()
                and waiter.exception() is None
                and waiter.result() is None
            ):
                self._hand_over()  # cancelled just as its turn came
            raise

    async def _send_in_turn(self, client: Any, record: _Record) -> Any:
        """Send ``record``, then the records queued meanwhile; aiokafka's future of ``record``."""
        self._sending = True
        try:
            future = await client.send(*record)
            if self._queued:
                await self._serve_queued(client)
            return future
        finally:
            self._sending = False
            if self._queued:
                self._hand_over()

    async def _serve_queued(self, client: Any) -> None:
        """Send the records queued while this sender was inside aiokafka, in order."""
        queued = self._queued
        # Only those queued by now: with senders that keep coming, serving
        # until the queue is empty could keep this caller here for ever.
        turns = len(queued)
        while queued and turns:
            turns -= 1
            other, waiter, settle, where = queued[0]
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
            if settle:
                delivery.add_done_callback(_Settle(waiter, where))
            else:
                waiter.set_result(delivery)

    def _hand_over(self) -> None:
        # Leaving with records queued (the sender was cancelled or failed):
        # the first one still waiting takes over.
        queued = self._queued
        while queued:
            waiter = queued[0][1]
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
