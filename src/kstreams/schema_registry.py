"""Schema Registry serialization over ``confluent_kafka.schema_registry``'s async serde.

The serializers and deserializers here wrap confluent-kafka's
``AsyncAvroSerializer``, ``AsyncJSONSerializer`` and
``AsyncProtobufSerializer`` (and their deserializers) as kstreams
``Serializer``/``Deserializer`` objects, so they work on every backend,
memory included. The wire format is confluent's: a magic byte and the
schema id, then the encoded value.

Install the extra of the format: ``kstreams-hex[avro]``, ``[jsonschema]`` or
``[protobuf]``. Give each the registry client and the schema::

    from confluent_kafka.schema_registry import AsyncSchemaRegistryClient

    registry = AsyncSchemaRegistryClient({"url": "http://registry:8081"})
    engine = create_engine(
        serializer=AvroSerializer(registry, ORDER_SCHEMA),
        deserializer=AvroDeserializer(registry),
    )

confluent's serde objects are built with ``await``, so each wrapper builds its
own on first use: declare them at import time, outside any event loop. The
subject is the one confluent's ``subject.name.strategy`` names, by default
``<topic>-value``: the producer tells these serializers the topic of each
record. They encode values; a key goes through ``key_serializer`` as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kstreams.exceptions import (
    BackendNotAvailableError,
    DeserializationError,
    SerializationError,
)
from kstreams.records import ConsumerRecord, copy_record

try:
    from confluent_kafka.schema_registry import SchemaRegistryError
    from confluent_kafka.serialization import MessageField, SerializationContext
    from confluent_kafka.serialization import SerializationError as ClientSerializationError
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise BackendNotAvailableError(
        "kstreams.schema_registry needs confluent-kafka's Schema Registry support: "
        "pip install 'kstreams-hex[avro]' (or [jsonschema], [protobuf])"
    ) from exc

#: An async serde callable as confluent builds it: ``await serde(data, ctx)``.
Serde = Callable[[Any, Any], Awaitable[Any]]

_FAILURES = (ClientSerializationError, SchemaRegistryError, ValueError, TypeError, KeyError)


class _Lazy:
    """Builds confluent's serde object once, on first use, inside the running loop."""

    def __init__(self, build: Callable[[], Awaitable[Serde]]) -> None:
        self._build = build
        self._serde: Serde | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Serde:
        if self._serde is None:
            async with self._lock:
                if self._serde is None:
                    self._serde = await self._build()
        return self._serde


def _header_list(headers: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return list(headers.items()) if headers else []


class SchemaRegistrySerializer:
    """A kstreams ``Serializer`` over one of confluent's async Schema Registry serializers.

    ``build`` is a no-argument function returning what confluent's constructor
    returns (an awaitable serializer), e.g.
    ``lambda: AsyncAvroSerializer(registry, schema)``; the format classes
    below build it for you.
    """

    #: Tells the producer to pass ``topic=``: the subject is named after it.
    topic_aware = True

    def __init__(self, build: Callable[[], Awaitable[Serde]]) -> None:
        self._serde = _Lazy(build)

    async def serialize(
        self,
        payload: Any,
        headers: dict[str, Any] | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
        *,
        topic: str | None = None,
    ) -> bytes:
        topic = (serializer_kwargs or {}).get("topic", topic)
        if topic is None:
            raise SerializationError(
                f"{type(self).__name__} needs the topic to name the subject: produce through "
                "the engine, or pass serializer_kwargs={'topic': ...}"
            )
        serde = await self._serde.get()
        context = SerializationContext(topic, MessageField.VALUE, _header_list(headers))
        try:
            data = await serde(payload, context)
        except _FAILURES as exc:
            raise SerializationError(
                f"{type(self).__name__} cannot encode a {type(payload).__name__} for topic "
                f"{topic!r}: {exc}"
            ) from exc
        if headers is not None and context.headers:
            # A header schema-id strategy writes the id into the headers.
            headers.update(context.headers)
        if data is None:
            raise SerializationError(f"{type(self).__name__} encoded {payload!r} as no bytes")
        result: bytes = data
        return result


class SchemaRegistryDeserializer:
    """A kstreams ``Deserializer`` over one of confluent's async Schema Registry deserializers.

    A value that does not decode is a ``DeserializationError`` (the stream's
    error policy applies); a ``None`` value (a tombstone) stays ``None``.
    """

    def __init__(self, build: Callable[[], Awaitable[Serde]]) -> None:
        self._serde = _Lazy(build)

    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]:
        if consumer_record.value is None:
            return consumer_record
        serde = await self._serde.get()
        context = SerializationContext(
            consumer_record.topic, MessageField.VALUE, list(consumer_record.headers)
        )
        try:
            value = await serde(consumer_record.value, context)
        except _FAILURES as exc:
            raise DeserializationError(
                f"record {consumer_record.topic}[{consumer_record.partition}]@"
                f"{consumer_record.offset}: {type(self).__name__} cannot decode it: {exc}"
            ) from exc
        return copy_record(consumer_record, value=value)


class AvroSerializer(SchemaRegistrySerializer):
    """Avro values (dicts, or objects ``to_dict`` turns into dicts) in confluent's framing."""

    def __init__(
        self,
        registry: Any,
        schema: Any,
        *,
        to_dict: Callable[[Any, Any], dict[str, Any]] | None = None,
        conf: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry.avro import AsyncAvroSerializer

        super().__init__(lambda: AsyncAvroSerializer(registry, schema, to_dict=to_dict, conf=conf))


class AvroDeserializer(SchemaRegistryDeserializer):
    """Avro values into dicts (or what ``from_dict`` makes of them)."""

    def __init__(
        self,
        registry: Any,
        schema: Any = None,
        *,
        from_dict: Callable[[dict[str, Any], Any], Any] | None = None,
        conf: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry.avro import AsyncAvroDeserializer

        super().__init__(
            lambda: AsyncAvroDeserializer(registry, schema, from_dict=from_dict, conf=conf)
        )


class JsonSchemaSerializer(SchemaRegistrySerializer):
    """JSON values validated against a JSON Schema, in confluent's framing."""

    def __init__(
        self,
        registry: Any,
        schema: Any,
        *,
        to_dict: Callable[[Any, Any], dict[str, Any]] | None = None,
        conf: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry.json_schema import AsyncJSONSerializer

        super().__init__(lambda: AsyncJSONSerializer(schema, registry, to_dict=to_dict, conf=conf))


class JsonSchemaDeserializer(SchemaRegistryDeserializer):
    """JSON Schema values into dicts (or what ``from_dict`` makes of them).

    With ``schema=None`` the writer's schema is fetched from the registry.
    """

    def __init__(
        self,
        registry: Any,
        schema: Any = None,
        *,
        from_dict: Callable[[dict[str, Any], Any], Any] | None = None,
        conf: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry.json_schema import AsyncJSONDeserializer

        super().__init__(
            lambda: AsyncJSONDeserializer(
                schema, from_dict=from_dict, schema_registry_client=registry, conf=conf
            )
        )


class ProtobufSerializer(SchemaRegistrySerializer):
    """Protobuf messages of ``message_type`` in confluent's framing."""

    def __init__(
        self, registry: Any, message_type: type[Any], *, conf: dict[str, Any] | None = None
    ) -> None:
        from confluent_kafka.schema_registry.protobuf import AsyncProtobufSerializer

        conf = {"use.deprecated.format": False, **(conf or {})}
        super().__init__(lambda: AsyncProtobufSerializer(message_type, registry, conf=conf))


class ProtobufDeserializer(SchemaRegistryDeserializer):
    """Protobuf messages of ``message_type``."""

    def __init__(
        self,
        message_type: type[Any],
        *,
        registry: Any = None,
        conf: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry.protobuf import AsyncProtobufDeserializer

        conf = {"use.deprecated.format": False, **(conf or {})}
        super().__init__(
            lambda: AsyncProtobufDeserializer(
                message_type, conf=conf, schema_registry_client=registry
            )
        )


__all__ = [
    "AvroDeserializer",
    "AvroSerializer",
    "JsonSchemaDeserializer",
    "JsonSchemaSerializer",
    "ProtobufDeserializer",
    "ProtobufSerializer",
    "SchemaRegistryDeserializer",
    "SchemaRegistrySerializer",
]
