"""The engine's producer: serialization and headers on top of a ProducerPort.

How a value becomes bytes, on every backend alike: the ``serializer`` given
to the call, else the engine's serializer, else the ``value_serializer`` of
``producer_options`` (aiokafka's plain-callable spelling of the same thing);
``key_serializer`` turns the key into bytes. ``serializer=None`` sends key
and value as they are (bytes, str encoded as UTF-8, or None), skipping all of
them. The core applies ``key_serializer``/``value_serializer`` itself and never
hands them to the client, so nothing is serialized twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from kstreams.exceptions import (
    ConfigError,
    EngineNotStartedError,
    ProducerClosedError,
    SerializationError,
)
from kstreams.ports import Backend, BatchSendPort, ProducerPort
from kstreams.records import RecordMetadata
from kstreams.serializers import Serializer
from kstreams.types import BatchEvent, HeadersInput, encode_headers

_Encoded = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]
#: ``SendAndWaitPort.send_and_wait`` of a port that has it.
SendAndWait = Callable[..., Awaitable[RecordMetadata]]


class _UseDefault:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``serializer=DEFAULT`` (the default) uses the engine's serializer;
#: ``serializer=None`` sends the value as raw bytes.
DEFAULT: Any = _UseDefault()


def _has_send_batch(port: object) -> bool:
    return callable(getattr(port, "send_batch", None))


#: The producer options the core applies instead of the client.
CORE_PRODUCER_OPTIONS = frozenset({"key_serializer", "value_serializer"})


def _raw(value: Any, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    dump_json = getattr(value, "model_dump_json", None)
    if callable(dump_json):  # a pydantic model: its own JSON, no serializer needed
        return str(dump_json()).encode()
    raise SerializationError(
        f"{what} must be bytes, str or None without a serializer, got {type(value).__name__}; "
        "pass serializer= to engine.send or create_engine (kstreams.serializers.JsonSerializer "
        "encodes dicts and lists)"
    )


class Producer:
    """Builds records from payloads and hands them to the backend's producer."""

    def __init__(
        self, backend: Backend, *, serializer: Serializer | None, options: Mapping[str, Any]
    ) -> None:
        options = dict(options)
        self._key_serializer: Callable[[Any], Any] | None = options.pop("key_serializer", None)
        self._value_serializer: Callable[[Any], Any] | None = options.pop("value_serializer", None)
        self._no_plain_serializers = self._key_serializer is None and self._value_serializer is None
        if serializer is not None and self._value_serializer is not None:
            raise ConfigError(
                "give the engine a serializer or producer_options['value_serializer'], not both"
            )
        self._backend = backend
        self.serializer = serializer
        self._options = options
        self._port: ProducerPort | None = None
        #: The port's ``send_and_wait``, when it has one (``SendAndWaitPort``).
        self._send_and_wait: SendAndWait | None = None
        #: The offset of the last record acknowledged, per (topic, partition).
        self.last_offsets: dict[tuple[str, int], int] = {}

    @property
    def started(self) -> bool:
        return self._port is not None

    @property
    def options(self) -> dict[str, Any]:
        """The options the backend's producer is built with (serializers excluded)."""
        return dict(self._options)

    async def start(self) -> None:
        if self._port is None:
            port = self._backend.create_producer(self._options)
            await port.start()
            self._port = port
            self._send_and_wait = cast(SendAndWait | None, getattr(port, "send_and_wait", None))

    async def stop(self) -> None:
        port, self._port = self._port, None
        self._send_and_wait = None
        if port is not None:
            await port.stop()

    def _require_port(self) -> ProducerPort:
        if self._port is None:
            raise EngineNotStartedError("the engine is not started: await engine.start() first")
        return self._port

    def _async_serializer(self, serializer: Any) -> Any:
        """The async serializer a send with ``serializer`` (as given) goes through, or None."""
        if serializer is None:
            return None
        return self.serializer if serializer is DEFAULT else serializer

    def _encode_plain(
        self, value: Any, key: Any, headers: HeadersInput | None, serializer: Any
    ) -> _Encoded:
        """Encode where no async serializer takes part: without a coroutine per record.
        ``serializer=None`` sends the bytes as given; otherwise the engine's plain
        key/value serializers apply."""
        if (
            type(value) is bytes
            and key is None
            and not headers
            and (serializer is None or self._no_plain_serializers)
        ):
            return value, None, ()
        if serializer is not None:
            if self._value_serializer is not None:
                value = self._value_serializer(value)
            if self._key_serializer is not None:
                key = self._key_serializer(key)
        return _raw(value, "value"), _raw(key, "key"), encode_headers(headers)

    async def _encode(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: HeadersInput | None,
        serializer: Any,
        serializer_kwargs: dict[str, Any] | None,
    ) -> _Encoded:
        chosen = self._async_serializer(serializer)
        if chosen is None:
            return self._encode_plain(value, key, headers, serializer)
        pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
        header_dict: dict[str, Any] = dict(pairs)
        given = dict(header_dict)
        if getattr(chosen, "topic_aware", False):
            # Schema Registry serializers name their subject after the topic.
            serialize: Any = chosen.serialize
            value = await serialize(
                value, headers=header_dict, serializer_kwargs=serializer_kwargs, topic=topic
            )
        else:
            value = await chosen.serialize(
                value, headers=header_dict, serializer_kwargs=serializer_kwargs
            )
        if header_dict != given:
            # The serializer added or changed headers (a content type, say).
            headers = header_dict
        if self._key_serializer is not None:
            key = self._key_serializer(key)
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
        """Serialize and enqueue one record; await the result for the acknowledgement."""
        port = self._port
        if port is None:
            port = self._require_port()
        if self._async_serializer(serializer) is None:
            raw_value, raw_key, raw_headers = self._encode_plain(value, key, headers, serializer)
        else:
            raw_value, raw_key, raw_headers = await self._encode(
                topic, value, key, headers, serializer, serializer_kwargs
            )
        return await port.send(
            topic,
            raw_value,
            raw_key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=raw_headers,
        )

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersInput | None = None,
        serializer: Any = DEFAULT,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> RecordMetadata:
        """Serialize, send and wait for the acknowledgement: ``enqueue`` then its
        delivery, or in one call the port's ``send_and_wait`` when it has one."""
        send_and_wait = self._send_and_wait
        if send_and_wait is None or "enqueue" in self.__dict__:
            # No send_and_wait on the port, or enqueue wrapped (kstreams.opentelemetry).
            delivery = await self.enqueue(
                topic,
                value,
                key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=headers,
                serializer=serializer,
                serializer_kwargs=serializer_kwargs,
            )
            metadata = await delivery
        else:
            if self._async_serializer(serializer) is None:
                raw_value, raw_key, raw_headers = self._encode_plain(
                    value, key, headers, serializer
                )
            else:
                raw_value, raw_key, raw_headers = await self._encode(
                    topic, value, key, headers, serializer, serializer_kwargs
                )
            metadata = await send_and_wait(
                topic,
                raw_value,
                raw_key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=raw_headers,
            )
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
        """Enqueue every event, then wait for the acknowledgements, in order.

        Everything is enqueued before anything is awaited, so the client
        batches the records. If one fails, the others are still waited for
        (so no outcome goes unobserved) and the first error is raised.
        """
        port = self._require_port()
        if _has_send_batch(port):
            return await self._send_batch(
                cast(BatchSendPort, port),
                topic,
                batch_events,
                partition,
                timestamp_ms,
                serializer,
                serializer_kwargs,
            )
        deliveries: list[Awaitable[RecordMetadata]] = []
        try:
            for event in batch_events:
                deliveries.append(
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
                )
        except Exception:
            await self._settle(deliveries)
            raise
        results, error = await self._settle(deliveries)
        if error is not None:
            raise error
        return results

    async def _send_batch(
        self,
        port: BatchSendPort,
        topic: str,
        batch_events: Sequence[BatchEvent],
        partition: int | None,
        timestamp_ms: int | None,
        serializer: Any,
        serializer_kwargs: dict[str, Any] | None,
    ) -> list[RecordMetadata]:
        # One completion for the whole batch (one future, one loop wake-up),
        # instead of one per record. The events serialized before one that
        # fails to are still sent, as enqueue-per-record would.
        encoded: list[_Encoded] = []
        failure: Exception | None = None
        plain = self._async_serializer(serializer) is None
        append = encoded.append
        for event in batch_events:
            try:
                if plain:
                    append(self._encode_plain(event.value, event.key, event.headers, serializer))
                else:
                    append(
                        await self._encode(
                            topic,
                            event.value,
                            event.key,
                            event.headers,
                            serializer,
                            serializer_kwargs,
                        )
                    )
            except Exception as exc:
                failure = exc
                break
        outcomes = await (
            await port.send_batch(topic, encoded, partition=partition, timestamp_ms=timestamp_ms)
        )
        failed = [outcome for outcome in outcomes if not isinstance(outcome, RecordMetadata)]
        results = cast(list[RecordMetadata], outcomes)
        if failed:
            results = [outcome for outcome in outcomes if isinstance(outcome, RecordMetadata)]
            failure = failure or failed[0]
        # The last offset per partition: one dict entry per partition, not per record.
        last = {metadata.partition: metadata.offset for metadata in results}
        for number, offset in last.items():
            self.last_offsets[(topic, number)] = offset
        if failure is not None:
            raise failure
        return results

    async def _settle(
        self, deliveries: list[Awaitable[RecordMetadata]]
    ) -> tuple[list[RecordMetadata], Exception | None]:
        results: list[RecordMetadata] = []
        error: Exception | None = None
        last = self.last_offsets
        for delivery in deliveries:
            try:
                metadata = await delivery
            except Exception as exc:
                error = error or exc
                continue
            last[(metadata.topic, metadata.partition)] = metadata.offset
            results.append(metadata)
        return results, error

    async def flush(self) -> None:
        port = self._port
        if port is None:
            raise ProducerClosedError("the producer is not running")
        await port.flush()
