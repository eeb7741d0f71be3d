"""The engine's producer: serialization and headers on top of a ProducerPort."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from kstreams.exceptions import EngineNotStartedError, ProducerClosedError
from kstreams.ports import Backend, ProducerPort
from kstreams.records import RecordMetadata
from kstreams.serializers import Serializer
from kstreams.types import BatchEvent, HeadersInput, encode_headers


class _UseDefault:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``serializer=DEFAULT`` (the default) uses the engine's serializer;
#: ``serializer=None`` sends the value as raw bytes.
DEFAULT: Any = _UseDefault()


def _raw(value: Any, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(
        f"{what} must be bytes, str or None without a serializer, got {type(value).__name__}; "
        "pass serializer= to engine.send or create_engine"
    )


class Producer:
    """Builds records from payloads and hands them to the backend's producer."""

    def __init__(
        self, backend: Backend, *, serializer: Serializer | None, options: dict[str, Any]
    ) -> None:
        self._backend = backend
        self.serializer = serializer
        self._options = options
        self._port: ProducerPort | None = None
        #: The offset of the last record acknowledged, per (topic, partition).
        self.last_offsets: dict[tuple[str, int], int] = {}

    @property
    def started(self) -> bool:
        return self._port is not None

    async def start(self) -> None:
        if self._port is None:
            port = self._backend.create_producer(self._options)
            await port.start()
            self._port = port

    async def stop(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            await port.stop()

    def _require_port(self) -> ProducerPort:
        if self._port is None:
            raise EngineNotStartedError("the engine is not started: await engine.start() first")
        return self._port

    async def _encode(
        self,
        value: Any,
        key: Any,
        headers: HeadersInput | None,
        serializer: Any,
        serializer_kwargs: dict[str, Any] | None,
    ) -> tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]:
        chosen = self.serializer if serializer is DEFAULT else serializer
        if chosen is not None:
            header_dict = dict(headers.items() if isinstance(headers, Mapping) else headers or ())
            value = await chosen.serialize(
                value, headers=header_dict, serializer_kwargs=serializer_kwargs
            )
        return _raw(value, "value"), _raw(key, "key"), encode_headers(headers)

    async def enqueue(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersInput | None = None,
        serializer: Any = DEFAULT,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> Awaitable[RecordMetadata]:
        port = self._require_port()
        raw_value, raw_key, raw_headers = await self._encode(
            value, key, headers, serializer, serializer_kwargs
        )
        return await port.send(
            topic,
            raw_value,
            raw_key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=raw_headers,
        )

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> RecordMetadata:
        delivery = await self.enqueue(topic, *args, **kwargs)
        metadata = await delivery
        self.last_offsets[(metadata.topic, metadata.partition)] = metadata.offset
        return metadata

    async def send_many(
        self,
        topic: str,
        batch_events: Sequence[BatchEvent],
        partition: int | None = None,
        timestamp_ms: int | None = None,
        serializer: Any = DEFAULT,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> list[RecordMetadata]:
        """Enqueue every event, then wait for all acknowledgements at once."""
        deliveries = [
            await self.enqueue(
                topic,
                event.value,
                event.key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=event.headers,
                serializer=serializer,
                serializer_kwargs=serializer_kwargs,
            )
            for event in batch_events
        ]
        results = list(await asyncio.gather(*deliveries))
        last = self.last_offsets
        for metadata in results:
            last[(metadata.topic, metadata.partition)] = metadata.offset
        return results

    async def flush(self) -> None:
        port = self._port
        if port is None:
            raise ProducerClosedError("the producer is not running")
        await port.flush()
