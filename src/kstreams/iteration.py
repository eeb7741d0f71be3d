"""Reading a stream by hand: ``async for``, ``getone``/``getmany``, ``async with``.

A mixin of :class:`~kstreams.streams.Stream`: the records as the user's own
loop sees them, deserialized, and the commits such a loop can ask for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Self

from kstreams.exceptions import ConsumerStoppedError, StreamError
from kstreams.handling import Deserialization
from kstreams.injection import HandlerSpec
from kstreams.records import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.ports import RawRecord
    from kstreams.serializers import Deserializer


class RecordIteration:
    """What a stream offers a loop that reads it itself."""

    name: str
    spec: HandlerSpec
    consumer: StreamConsumer | None
    deserializer: Deserializer | None
    _key_deserializer: Callable[[Any], Any] | None
    _value_deserializer: Callable[[Any], Any] | None
    _stopping: bool
    _restarts: int
    _handed_since_restart: bool
    _flow: AsyncIterator[Any] | None

    if TYPE_CHECKING:

        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        def _generator(self) -> AsyncIterator[Any]: ...

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ConsumerRecord[Any, Any]:
        consumer = self.consumer
        if consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        if self._restarts:
            # Asking for the next record after a restart: the one before was handled.
            if self._handed_since_restart:
                self._restarts = 0
            self._handed_since_restart = True
        try:
            record: ConsumerRecord[Any, Any] = await consumer.getone()
        except ConsumerStoppedError:
            if self._stopping:
                raise StopAsyncIteration from None
            raise
        if self._deserializing:
            record = await self._deserialize(record)
        return record

    def _deserialization(self) -> Deserialization:
        return Deserialization(self.deserializer, self._key_deserializer, self._value_deserializer)

    @property
    def _deserializing(self) -> bool:
        return bool(self.deserializer or self._key_deserializer or self._value_deserializer)

    async def _deserialize(self, record: RawRecord) -> ConsumerRecord[Any, Any]:
        return await self._deserialization().record(record)

    async def getone(self) -> ConsumerRecord[Any, Any]:
        return await self.__anext__()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        consumer = self.consumer
        if consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        raw: dict[TopicPartition, list[RawRecord]] = await consumer.getmany(
            *partitions, timeout_ms=timeout_ms, max_records=max_records
        )
        if not self._deserializing:
            return dict(raw)
        deserialization = self._deserialization()
        return {tp: await deserialization.batch(records) for tp, records in raw.items()}

    def raw_record(self, record: ConsumerRecord[Any, Any]) -> RawRecord:
        """The record in hand as it was consumed: bytes key and value, before deserialization.

        ``record`` is the one being handled (or one of the batch being
        handled), deserialized or not; it is found by topic, partition and
        offset. Without a deserializer, that is ``record`` itself. Raises
        ``StreamError`` for a deserialized record no longer in hand.
        """
        if not self._deserializing:
            return record
        raw = None
        if self.consumer is not None:
            raw = self.consumer.in_hand(
                TopicPartition(record.topic, record.partition), record.offset
            )
        if raw is not None:
            return raw
        raise StreamError(
            f"stream {self.name!r}: record {record.topic}[{record.partition}]@{record.offset} "
            "is not in hand"
        )

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets``, or everything handed out so far (the record in hand included)."""
        if self.consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        await self.consumer.commit(offsets)

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition`` (a broker round-trip), or None."""
        if self.consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        return await self.consumer.committed(partition)

    async def __aenter__(self) -> AsyncIterator[Any]:
        """Start the stream and return what its generator yields."""
        if not self.spec.is_generator:
            raise StreamError(
                f"stream {self.name!r} is not a generator; the engine runs it, "
                "'async with' is for streams that yield"
            )
        await self.start()
        self._flow = self._generator()
        return self._flow

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """Stop the stream. Leaving the block normally (``break`` included) means the
        caller is done with the record whose value it got last: it counts as handled."""
        flow, self._flow = self._flow, None
        self._stopping = True
        if flow is not None and hasattr(flow, "aclose"):
            await flow.aclose()
        if exc_type is None and self.consumer is not None:
            self.consumer.release()
        await self.stop()
