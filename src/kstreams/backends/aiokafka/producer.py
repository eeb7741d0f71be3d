"""The producer port on aiokafka's AIOKafkaProducer."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Generator
from typing import Any

import aiokafka

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.errors import CLIENT_ERRORS, close_shielded, start_client, translate
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
            future = await client.send(
                topic,
                value,
                key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                # aiokafka's C record builder takes only a list.
                headers=headers if type(headers) is list else list(headers),
            )
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
