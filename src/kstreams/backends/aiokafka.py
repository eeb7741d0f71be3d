"""The aiokafka adapter: the ports on AIOKafkaConsumer and AIOKafkaProducer."""

from __future__ import annotations

import dataclasses
import operator
import re
import time
from collections.abc import Awaitable, Generator, Iterable, Mapping, Sequence
from typing import Any

import aiokafka
import aiokafka.errors as aioerrors
import anyio
from aiokafka.abc import ConsumerRebalanceListener

from kstreams import exceptions as kerrors
from kstreams.options import (
    CONSUMER_OPTIONS,
    CORE_CONSUMER_OPTIONS,
    PRODUCER_OPTIONS,
    check_options,
    heartbeat_interval_ms,
    metadata_max_age_ms,
)
from kstreams.ports import RawRecord, RebalanceCallbacks, RecordBatch
from kstreams.records import CREATE_TIME, ConsumerRecord, Headers, RecordMetadata, TopicPartition

__all__ = ["AiokafkaConsumer", "AiokafkaProducer"]

_AioTopicPartition = aiokafka.TopicPartition

# aiokafka's ConsumerStoppedError and IllegalOperation do not derive from its KafkaError.
_CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    aioerrors.KafkaError,
    aioerrors.ConsumerStoppedError,
    aioerrors.IllegalOperation,
)

_ERROR_MAP: dict[type[BaseException], type[kerrors.KafkaError]] = {
    aioerrors.ConsumerStoppedError: kerrors.ConsumerStoppedError,
    aioerrors.IllegalOperation: kerrors.IllegalOperationError,
    aioerrors.IllegalStateError: kerrors.IllegalStateError,
    aioerrors.CommitFailedError: kerrors.CommitFailedError,
    aioerrors.NoOffsetForPartitionError: kerrors.NoOffsetForPartitionError,
    aioerrors.OffsetOutOfRangeError: kerrors.OffsetOutOfRangeError,
    aioerrors.UnknownTopicOrPartitionError: kerrors.UnknownTopicOrPartitionError,
    aioerrors.RecordTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.MessageSizeTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.RecordListTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.KafkaConnectionError: kerrors.KafkaConnectionError,
    aioerrors.NoBrokersAvailable: kerrors.KafkaConnectionError,
    aioerrors.KafkaUnavailableError: kerrors.KafkaConnectionError,
    aioerrors.KafkaTimeoutError: kerrors.KafkaTimeoutError,
    aioerrors.RequestTimedOutError: kerrors.KafkaTimeoutError,
    aioerrors.ProducerClosed: kerrors.ProducerClosedError,
    aioerrors.ProducerFenced: kerrors.ProducerFencedError,
}


def _translate(exc: BaseException) -> kerrors.KafkaError:
    """The kstreams error for an aiokafka one: the nearest mapped class in its MRO."""
    message = str(exc) or type(exc).__name__
    for cls in type(exc).__mro__:
        target = _ERROR_MAP.get(cls)
        if target is not None:
            return target(message)
    return kerrors.KafkaError(message)


def _to_client_tp(tp: TopicPartition) -> Any:
    return _AioTopicPartition(tp.topic, tp.partition)


def _to_client_tps(tps: Iterable[TopicPartition]) -> list[Any]:
    return [_AioTopicPartition(tp.topic, tp.partition) for tp in tps]


def _from_client_tps(tps: Iterable[Any]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in tps)


# aiokafka's record has the eleven fields of ConsumerRecord, by the same names: one
# C attrgetter reads them all, in our order, as the constructor's arguments.
_FIELDS = tuple(field.name for field in dataclasses.fields(ConsumerRecord))
_read_fields = operator.attrgetter(*_FIELDS)


def _convert_records(records: list[Any]) -> list[RawRecord]:
    make, read = ConsumerRecord, _read_fields
    return [make(*read(record)) for record in records]


async def _close_shielded(client: Any) -> None:
    # A cancelled or failed start must still close the client, or aiokafka warns
    # about an unclosed client when it is collected.
    with anyio.CancelScope(shield=True):
        await client.stop()


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, callbacks: RebalanceCallbacks) -> None:
        self._callbacks = callbacks

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # aiokafka reports an empty revocation before the first assignment.
        if revoked:
            await self._callbacks.on_partitions_revoked(_from_client_tps(revoked))

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self._callbacks.on_partitions_assigned(_from_client_tps(assigned))


class AiokafkaConsumer:
    def __init__(self, *, group_id: str | None = None, **aiokafka_consumer_kwargs: Any) -> None:
        check_options("AiokafkaConsumer", aiokafka_consumer_kwargs, CONSUMER_OPTIONS)
        options = {
            name: value
            for name, value in aiokafka_consumer_kwargs.items()
            if name not in CORE_CONSUMER_OPTIONS
        }
        options["enable_auto_commit"] = False
        options["heartbeat_interval_ms"] = heartbeat_interval_ms(aiokafka_consumer_kwargs)
        self._group_id = group_id
        self._options = options
        self._topics: tuple[str, ...] = ()
        self._pattern: str | None = None
        self._listener: RebalanceCallbacks | None = None
        self._client: Any = None
        self._stopped = False
        self._tps: dict[Any, TopicPartition] = {}

    def _running(self) -> Any:
        client = self._client
        if client is None:
            raise self._not_running()
        return client

    def _not_running(self) -> kerrors.KafkaError:
        if self._stopped:
            return kerrors.ConsumerStoppedError("the consumer was stopped")
        return kerrors.IllegalStateError("the consumer is not started")

    def _assigned(self, client: Any, partitions: Iterable[TopicPartition]) -> list[Any]:
        assigned = client.assignment()
        converted = _to_client_tps(partitions)
        missing = [tp for tp in converted if tp not in assigned]
        if missing:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in missing)
            raise kerrors.IllegalStateError(f"partitions not assigned: {names}")
        return converted

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        if self._stopped:
            raise kerrors.ConsumerStoppedError("the consumer was stopped")
        if bool(topics) == (pattern is not None):
            raise kerrors.ConfigError("subscribe needs either topics or a pattern, not both")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise kerrors.ConfigError(f"invalid topic pattern {pattern!r}: {exc}") from exc
        self._topics = tuple(topics)
        self._pattern = pattern
        self._listener = listener
        if self._client is not None:
            self._apply_subscription(self._client)

    def _apply_subscription(self, client: Any) -> None:
        listener = _RebalanceListener(self._listener) if self._listener is not None else None
        if self._pattern is not None:
            client.subscribe(pattern=self._pattern, listener=listener)
        elif self._topics:
            client.subscribe(topics=list(self._topics), listener=listener)

    async def start(self) -> None:
        if self._stopped:
            raise kerrors.ConsumerStoppedError("the consumer was stopped")
        if self._client is not None:
            raise kerrors.IllegalStateError("the consumer is already started")
        # Set before aiokafka's start, which runs the first assignment's
        # callbacks: those may call back into this adapter.
        options = dict(self._options)
        options["metadata_max_age_ms"] = metadata_max_age_ms(
            options, pattern=self._pattern is not None
        )
        client = self._client = aiokafka.AIOKafkaConsumer(group_id=self._group_id, **options)
        try:
            self._apply_subscription(client)
            await client.start()
        except BaseException as exc:
            self._client = None
            self._stopped = True
            await _close_shielded(client)
            if isinstance(exc, _CLIENT_ERRORS):
                raise _translate(exc) from exc
            raise
        if self._group_id is None and self._listener is not None:
            # Without a group aiokafka assigns every partition itself and never
            # calls the listener; report that first assignment as a group would.
            await self._listener.on_partitions_assigned(self.assignment())

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._stopped = True
        if client is None:
            return
        try:
            await client.stop()
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> RecordBatch:
        client = self._client
        if client is None:
            raise self._not_running()
        try:
            fetched = await client.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
        batch: RecordBatch = {}
        tps = self._tps
        for client_tp, records in fetched.items():
            tp = tps.get(client_tp)
            if tp is None:
                tp = tps[client_tp] = TopicPartition(client_tp.topic, client_tp.partition)
            batch[tp] = _convert_records(records)
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        client = self._running()
        if self._group_id is None:
            raise kerrors.IllegalOperationError("commit needs a consumer with a group_id")
        if not offsets:
            return
        to_commit = {_to_client_tp(tp): offset for tp, offset in offsets.items()}
        try:
            await client.commit(to_commit)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    async def committed(self, partition: TopicPartition) -> int | None:
        client = self._running()
        if self._group_id is None:
            raise kerrors.IllegalOperationError("committed needs a consumer with a group_id")
        try:
            offset = await client.committed(_to_client_tp(partition))
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
        return None if offset is None else int(offset)

    async def position(self, partition: TopicPartition) -> int:
        client = self._running()
        try:
            return int(await client.position(_to_client_tp(partition)))
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        client = self._running()
        if offset < 0:
            raise kerrors.OffsetOutOfRangeError(f"cannot seek {partition} to offset {offset}")
        (client_tp,) = self._assigned(client, (partition,))
        try:
            client.seek(client_tp, offset)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    async def _seek_to(self, method: str, partitions: tuple[TopicPartition, ...]) -> None:
        client = self._running()
        targets = self._assigned(client, partitions) if partitions else list(client.assignment())
        if not targets:
            return
        try:
            # aiokafka returns False when the reset is still pending after
            # request_timeout_ms; the fetcher still applies it before fetching.
            await getattr(client, method)(*targets)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        await self._seek_to("seek_to_beginning", partitions)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        await self._seek_to("seek_to_end", partitions)

    async def _offsets(
        self, method: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        client = self._running()
        if not partitions:
            return {}
        try:
            offsets = await getattr(client, method)(_to_client_tps(partitions))
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
        return {
            TopicPartition(tp.topic, tp.partition): int(offset) for tp, offset in offsets.items()
        }

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await self._offsets("beginning_offsets", partitions)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._offsets("end_offsets", partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return frozenset()
        return _from_client_tps(client.assignment())

    def highwater(self, partition: TopicPartition) -> int | None:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return None
        client_tp = _to_client_tp(partition)
        # aiokafka asserts the partition is assigned; unassigned means never seen.
        if client_tp not in client.assignment():
            return None
        highwater = client.highwater(client_tp)
        return None if highwater is None else int(highwater)

    def pause(self, *partitions: TopicPartition) -> None:
        client = self._running()
        client.pause(*self._assigned(client, partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        client = self._running()
        client.resume(*self._assigned(client, partitions))

    def paused(self) -> frozenset[TopicPartition]:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return frozenset()
        return _from_client_tps(client.paused())


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
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
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


class AiokafkaProducer:
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
        client = aiokafka.AIOKafkaProducer(**self._options)
        try:
            await client.start()
        except BaseException as exc:
            self._stopped = True
            await _close_shielded(client)
            if isinstance(exc, _CLIENT_ERRORS):
                raise _translate(exc) from exc
            raise
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._stopped = True
        if client is None:
            return
        try:
            try:
                await client.flush()
            finally:
                await _close_shielded(client)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

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
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
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
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    async def partitions_for(self, topic: str) -> frozenset[int]:
        client = self._running()
        try:
            partitions = await client.partitions_for(topic)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc) from exc
        return frozenset(partitions)
