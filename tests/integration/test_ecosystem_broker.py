"""Tracing, Schema Registry serde and pydantic value types on real clients and a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pydantic
import pytest
from confluent_kafka.schema_registry._async.mock_schema_registry_client import (
    AsyncMockSchemaRegistryClient,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kstreams import BatchEvent, ConsumerRecord, create_engine
from kstreams.backends import Aiokafka, Confluent
from kstreams.opentelemetry import instrument
from kstreams.ports import Backend
from kstreams.schema_registry import AvroDeserializer, AvroSerializer
from tests.broker import group_timings

pytestmark = pytest.mark.integration


ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "int"}, {"name": "item", "type": "string"}],
    }
)


class Order(pydantic.BaseModel):
    """The value model of the handlers below."""

    id: int
    item: str


@pytest.fixture(params=["aiokafka", "confluent"])
def backend(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Backend:
    """Each real client, on the test broker."""
    if request.param == "aiokafka":
        return Aiokafka(bootstrap_servers=kafka_bootstrap)
    return Confluent(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider recording finished spans in memory."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


async def test_a_trace_and_an_avro_model_cross_a_real_broker(
    backend: Backend,
    kafka_bootstrap: str,
    unique: str,
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """An Avro-encoded Order sent by one traced service is handled as an Order by another,
    inside the sender's trace."""
    provider, spans = exporter
    topic = f"eco-{unique}"
    registry = AsyncMockSchemaRegistryClient({"url": "mock://eco"})
    sender = instrument(
        create_engine(backend=backend, serializer=AvroSerializer(registry, ORDER_AVRO)),
        tracer_provider=provider,
    )
    receiver = create_engine(backend=backend, deserializer=AvroDeserializer(registry))
    got: asyncio.Queue[Order] = asyncio.Queue()

    @receiver.stream(
        topic,
        group_id=f"g-{unique}",
        auto_offset_reset="earliest",
        **group_timings(kafka_bootstrap),
    )
    async def handle(cr: ConsumerRecord[bytes, Order]) -> None:
        await got.put(cr.value)

    instrument(receiver, tracer_provider=provider)
    # Sent first, so the topic exists when the receiver subscribes (no metadata wait).
    await sender.start()
    try:
        await sender.send(topic, value={"id": 7, "item": "lamp"}, key=b"k-7")
        await sender.send_many(topic, [BatchEvent(value={"id": 8, "item": "desk"}, key=b"k-8")])
    finally:
        await sender.stop()
    await receiver.start()
    try:
        order = await asyncio.wait_for(got.get(), 30)
        second = await asyncio.wait_for(got.get(), 30)
    finally:
        await receiver.stop()
    assert (order, second) == (Order(id=7, item="lamp"), Order(id=8, item="desk"))
    produced = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    consumed = sorted(
        (s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER),
        key=lambda s: s.start_time or 0,
    )
    assert len(produced) == len(consumed) == 2  # send, then send_many (batch path on confluent)
    for parent, child in zip(produced, consumed, strict=True):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    assert (consumed[0].attributes or {})["messaging.kafka.offset"] == 0
    assert (consumed[0].attributes or {})["messaging.kafka.message.key"] == "k-7"
