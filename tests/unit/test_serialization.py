"""The built-in JSON pair and pydantic value types, on the memory backend."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import sys
import uuid
from typing import Any

import pydantic
import pytest

from kstreams import (
    ConsumerRecord,
    DeadLetterMiddleware,
    GetMany,
    Middleware,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams import serializers as ser
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.dead_letter import ATTEMPTS_HEADER, EXCEPTION_HEADER
from kstreams.exceptions import DeserializationError, SerializationError


class Order(pydantic.BaseModel):
    """A model the handlers below ask for."""

    id: int
    item: str


@dataclasses.dataclass
class Shipment:
    """A dataclass payload."""

    order: int
    at: datetime.datetime


class Seen(list[Any]):
    """What a handler saw, with a bounded wait for a condition on it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def add(self, *values: Any) -> None:
        self.extend(values)
        self.changed.set()

    async def until(self, condition: Any, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not condition(self):
                self.changed.clear()
                await self.changed.wait()


async def test_json_serializer_round_trips_through_the_engine() -> None:
    """Engine default JsonSerializer/JsonDeserializer: a dict sent is a dict handled."""
    cluster = MemoryCluster()
    engine = create_engine(
        backend=Memory(cluster=cluster),
        serializer=ser.JsonSerializer(),
        deserializer=ser.JsonDeserializer(),
    )
    seen = Seen()

    @engine.stream("events", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, dict[str, Any]]) -> None:
        seen.add(cr.value)

    await engine.start()
    try:
        await engine.send("events", value={"n": 1, "tags": ["a"]})
        await engine.send("events", value=None)  # a tombstone stays None
        await seen.until(lambda s: len(s) == 2)
    finally:
        await engine.stop()
    assert seen == [{"n": 1, "tags": ["a"]}, None]
    first = cluster.records(TopicPartition("events", 0))[0]
    assert first.value == b'{"n":1,"tags":["a"]}'
    assert dict(first.headers) == {"content-type": b"application/json"}


@pytest.mark.parametrize("library", ["orjson", "json"])
async def test_both_json_libraries_write_the_same_document(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson and the stdlib fallback encode models, dataclasses, dates, UUIDs alike."""
    if library == "json":
        monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson fails
    name, dumps, loads = ser._pick()
    assert name == library
    payload = {
        "order": Order(id=1, item="book"),
        "shipment": Shipment(1, datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
        "id": uuid.UUID(int=7),
        "price": decimal.Decimal("9.99"),
        "tags": {"x"},
    }
    encoded = dumps(payload)
    assert encoded == (
        b'{"order":{"id":1,"item":"book"},"shipment":{"order":1,"at":"2026-01-02T03:04:05+00:00"},'
        b'"id":"00000000-0000-0000-0000-000000000007","price":"9.99","tags":["x"]}'
    )
    assert loads(encoded)["price"] == "9.99"


async def test_json_serializer_names_what_it_cannot_encode() -> None:
    """An object JSON cannot hold is a SerializationError naming its type."""
    with pytest.raises(SerializationError, match="JsonSerializer cannot encode a dict"):
        await ser.JsonSerializer().serialize({"x": object()})


async def test_json_deserializer_decodes_keys_when_asked() -> None:
    """keys=True decodes the key too; bytes values pass through JsonSerializer unchanged."""
    record = ConsumerRecord(
        topic="t", partition=0, offset=0, timestamp=0, timestamp_type=0, key=b'"k"', value=b"[1]"
    )
    decoded = await ser.JsonDeserializer(keys=True).deserialize(record)
    assert (decoded.key, decoded.value) == ("k", [1])
    assert await ser.JsonSerializer().serialize(b"raw") == b"raw"


async def test_a_model_annotation_validates_json_bytes_into_the_model() -> None:
    """ConsumerRecord[bytes, Order] hands the handler Order instances, the key untouched."""
    cluster = MemoryCluster()
    cluster.append("orders", b'{"id": 1, "item": "book"}', key=b"k")
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Seen()

    @engine.stream("orders", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, Order]) -> None:
        seen.add((cr.key, cr.value))

    await engine.start()
    try:
        await seen.until(len)
    finally:
        await engine.stop()
    assert seen == [(b"k", Order(id=1, item="book"))]
    assert cluster.committed("g", TopicPartition("orders", 0)) == 1


async def test_a_model_annotation_validates_what_the_deserializer_made() -> None:
    """After JsonDeserializer the dict is validated with model_validate; batches too."""
    cluster = MemoryCluster()
    for i in range(3):
        cluster.append("orders", f'{{"id": {i}, "item": "x"}}'.encode())
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=ser.JsonDeserializer())
    seen = Seen()

    @engine.stream(
        "orders", group_id="g", auto_offset_reset="earliest", get_many=GetMany(max_records=10)
    )
    async def handle(crs: list[ConsumerRecord[bytes, Order]]) -> None:
        seen.add(*(cr.value for cr in crs))

    await engine.start()
    try:
        await seen.until(lambda s: len(s) == 3)
    finally:
        await engine.stop()
    assert seen == [Order(id=i, item="x") for i in range(3)]


async def test_a_value_that_does_not_validate_is_a_deserialization_error() -> None:
    """An invalid value follows the error policy as a DeserializationError, uncommitted."""
    cluster = MemoryCluster()
    cluster.append("orders", b'{"id": "not a number", "item": "book"}')
    stopped = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster), after_stop=[stopped.set])

    @engine.stream(
        "orders",
        group_id="g",
        auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP_ENGINE,
    )
    async def handle(cr: ConsumerRecord[bytes, Order]) -> None:
        raise AssertionError("never called with an invalid Order")

    await engine.start()
    try:
        await asyncio.wait_for(stopped.wait(), 5)
    finally:
        await engine.stop()
    assert isinstance(handle.error, DeserializationError)
    assert "orders[0]@0: the value is not a valid Order" in str(handle.error)
    assert isinstance(handle.error.__cause__, pydantic.ValidationError)
    assert cluster.committed("g", TopicPartition("orders", 0)) is None


async def test_an_invalid_model_reaches_the_dead_letter_middleware_raw() -> None:
    """DeadLetterMiddleware sets an invalid record aside at once (no retries: it would fail
    again), with its original bytes, and goes on."""
    cluster = MemoryCluster()
    cluster.append("orders", b'{"id": 1, "item": "a"}')
    cluster.append("orders", b'{"id": "x"}')
    cluster.append("orders", b'{"id": 3, "item": "c"}')
    engine = create_engine(backend=Memory(cluster=cluster))
    seen = Seen()

    @engine.stream(
        "orders",
        group_id="g",
        auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP,
        middlewares=[Middleware(DeadLetterMiddleware, topic="orders-dlq", retries=5)],
    )
    async def handle(cr: ConsumerRecord[bytes, Order]) -> None:
        seen.add(cr.value.id)

    await engine.start()
    try:
        await seen.until(lambda s: s == [1, 3])
    finally:
        await engine.stop()
    (dead,) = cluster.records(TopicPartition("orders-dlq", 0))
    assert dead.value == b'{"id": "x"}'
    assert dict(dead.headers)[EXCEPTION_HEADER] == b"kstreams.exceptions.DeserializationError"
    assert dict(dead.headers)[ATTEMPTS_HEADER] == b"1"
    assert cluster.committed("g", TopicPartition("orders", 0)) == 3
    assert handle.error is None


async def test_producing_a_model_serializes_it() -> None:
    """engine.send(value=Order(...)) writes the model's JSON, with or without JsonSerializer."""
    cluster = MemoryCluster()
    plain = create_engine(backend=Memory(cluster=cluster))
    with_json = create_engine(backend=Memory(cluster=cluster), serializer=ser.JsonSerializer())
    for engine in (plain, with_json):
        await engine.start()
        try:
            await engine.send("out", value=Order(id=5, item="pen"))
        finally:
            await engine.stop()
    values = [r.value for r in cluster.records(TopicPartition("out", 0))]
    assert [Order.model_validate_json(v) for v in values] == [Order(id=5, item="pen")] * 2


def test_non_model_type_arguments_add_no_validation() -> None:
    """bytes, dict and Any type arguments leave the handler unwrapped (zero cost)."""
    from kstreams.injection import bind, inspect_handler

    async def handler(cr: ConsumerRecord[bytes, dict[str, Any]]) -> None: ...

    spec = inspect_handler(handler)
    assert (spec.key_model, spec.value_model) == (None, None)
    assert bind(spec, handler, stream=None, send=None) is handler


class CustomerKey(pydantic.BaseModel):
    """A model for record keys."""

    customer: str


def test_a_key_model_validates_the_key_and_none_stays_none() -> None:
    """ConsumerRecord[CustomerKey, Order]: both validated; a None value (tombstone) is kept."""
    from kstreams.value_types import converter, record_models

    key_model, value_model = record_models(ConsumerRecord[CustomerKey, Order])
    assert (key_model, value_model) == (CustomerKey, Order)
    convert = converter(key_model, value_model)
    record = ConsumerRecord(
        topic="t",
        partition=0,
        offset=4,
        timestamp=0,
        timestamp_type=0,
        key=b'{"customer": "c-1"}',
        value=None,
    )
    converted = convert(record)
    assert converted.key == CustomerKey(customer="c-1")
    assert converted.value is None
    assert record.key == b'{"customer": "c-1"}'  # the record itself keeps its bytes
    with pytest.raises(DeserializationError, match=r"t\[0\]@4: the key is not a valid CustomerKey"):
        convert(dataclasses.replace(record, key=b"{}"))


async def test_a_record_the_deserializer_cannot_decode_is_dead_lettered_at_once() -> None:
    """Not JSON for JsonDeserializer: dead-lettered after one attempt despite retries=5."""
    cluster = MemoryCluster()
    cluster.append("events", b"not json")
    cluster.append("events", b'{"n": 2}')
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=ser.JsonDeserializer())
    seen = Seen()

    @engine.stream(
        "events",
        group_id="g",
        auto_offset_reset="earliest",
        middlewares=[Middleware(DeadLetterMiddleware, topic="events-dlq", retries=5)],
    )
    async def handle(cr: ConsumerRecord[bytes, Any]) -> None:
        seen.add(cr.value)

    await engine.start()
    try:
        await seen.until(lambda s: s == [{"n": 2}])
    finally:
        await engine.stop()
    (dead,) = cluster.records(TopicPartition("events-dlq", 0))
    assert dead.value == b"not json"
    assert dict(dead.headers)[ATTEMPTS_HEADER] == b"1"
