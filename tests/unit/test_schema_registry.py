"""Schema Registry serde (Avro, JSON Schema, Protobuf) against confluent-kafka's mock registry."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry._async.mock_schema_registry_client import (
    AsyncMockSchemaRegistryClient,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from kstreams import ConsumerRecord, StreamErrorPolicy, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import DeserializationError, SerializationError
from kstreams.schema_registry import (
    AvroDeserializer,
    AvroSerializer,
    JsonSchemaDeserializer,
    JsonSchemaSerializer,
    ProtobufDeserializer,
    ProtobufSerializer,
)

ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "int"}, {"name": "item", "type": "string"}],
    }
)
ORDER_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
        "required": ["id", "item"],
    }
)


def _protobuf_order() -> Any:
    """An ``Order`` protobuf message class, built at run time (no protoc needed)."""
    fields = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="kstreams_tests/order.proto", package="kstreams_tests", syntax="proto3"
    )
    message = file.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=fields.TYPE_INT32, label=fields.LABEL_OPTIONAL)
    message.field.add(name="item", number=2, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    pool = descriptor_pool.Default()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kstreams_tests.Order"))


ProtoOrder = _protobuf_order()


def registry() -> AsyncMockSchemaRegistryClient:
    """confluent-kafka's own in-memory registry."""
    return AsyncMockSchemaRegistryClient({"url": "mock://kstreams-tests"})


def codecs(kind: str, client: Any) -> tuple[Any, Any, Any]:
    """(serializer, deserializer, a value) for one format."""
    if kind == "avro":
        return AvroSerializer(client, ORDER_AVRO), AvroDeserializer(client), {"id": 1, "item": "a"}
    if kind == "jsonschema":
        return (
            JsonSchemaSerializer(client, ORDER_JSON_SCHEMA),
            JsonSchemaDeserializer(client, ORDER_JSON_SCHEMA),
            {"id": 1, "item": "a"},
        )
    return (
        ProtobufSerializer(client, ProtoOrder),
        ProtobufDeserializer(ProtoOrder, registry=client),
        ProtoOrder(id=1, item="a"),
    )


@pytest.mark.parametrize("kind", ["avro", "jsonschema", "protobuf"])
async def test_values_round_trip_through_an_engine_on_memory(kind: str) -> None:
    """The engine's serializer registers the subject <topic>-value; the stream decodes it."""
    client = registry()
    serializer, deserializer, value = codecs(kind, client)
    cluster = MemoryCluster()
    engine = create_engine(
        backend=Memory(cluster=cluster), serializer=serializer, deserializer=deserializer
    )
    got: asyncio.Queue[Any] = asyncio.Queue()

    @engine.stream("orders", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, Any]) -> None:
        await got.put(cr.value)

    await engine.start()
    try:
        await engine.send("orders", value=value, key=b"k")
        decoded = await asyncio.wait_for(got.get(), 5)
    finally:
        await engine.stop()
    assert decoded == value
    (raw,) = cluster.records(TopicPartition("orders", 0))
    assert raw.value is not None
    assert raw.value[0] == 0  # confluent's framing: magic byte, then the schema id
    assert await client.get_subjects() == ["orders-value"]


async def test_a_value_the_schema_refuses_is_a_serialization_error() -> None:
    """A value missing a required Avro field fails engine.send with SerializationError."""
    engine = create_engine(backend="memory", serializer=AvroSerializer(registry(), ORDER_AVRO))
    await engine.start()
    try:
        with pytest.raises(SerializationError, match="AvroSerializer cannot encode a dict"):
            await engine.send("orders", value={"id": 1})
    finally:
        await engine.stop()


async def test_the_topic_is_needed_outside_the_engine() -> None:
    """Called directly without a topic, the serializer says how to give it one."""
    serializer = AvroSerializer(registry(), ORDER_AVRO)
    with pytest.raises(SerializationError, match="needs the topic"):
        await serializer.serialize({"id": 1, "item": "a"})
    data = await serializer.serialize({"id": 1, "item": "a"}, serializer_kwargs={"topic": "t"})
    assert data[0] == 0


async def test_bytes_not_in_the_registry_format_follow_the_error_policy() -> None:
    """A record that is not confluent-framed is a DeserializationError for the stream."""
    cluster = MemoryCluster()
    cluster.append("orders", b"plain text")
    stopped = asyncio.Event()
    engine = create_engine(
        backend=Memory(cluster=cluster),
        deserializer=AvroDeserializer(registry()),
        after_stop=[stopped.set],
    )

    @engine.stream(
        "orders",
        group_id="g",
        auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP_ENGINE,
    )
    async def handle(cr: ConsumerRecord[bytes, Any]) -> None:
        raise AssertionError("never reached")

    await engine.start()
    try:
        await asyncio.wait_for(stopped.wait(), 5)
    finally:
        await engine.stop()
    assert isinstance(handle.error, DeserializationError)
    assert "AvroDeserializer cannot decode it" in str(handle.error)


async def test_a_tombstone_stays_none() -> None:
    """A None value is not handed to the registry deserializer."""
    record = ConsumerRecord(
        topic="t", partition=0, offset=0, timestamp=0, timestamp_type=0, key=None, value=None
    )
    assert (await AvroDeserializer(registry()).deserialize(record)).value is None
