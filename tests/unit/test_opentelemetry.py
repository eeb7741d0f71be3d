"""OpenTelemetry spans and W3C context propagation, on the memory backend."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kstreams import BatchEvent, ConsumerRecord, GetMany, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.opentelemetry import TracingMiddleware, instrument, uninstrument


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider recording every finished span in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def test_a_trace_crosses_from_send_to_the_handler(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """send injects traceparent; the handler's CONSUMER span is the PRODUCER span's child."""
    provider, exporter = spans
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    handled = asyncio.Event()
    inside: list[Any] = []

    @engine.stream("orders", group_id="shop", auto_offset_reset="earliest")
    async def ship(cr: ConsumerRecord[bytes, bytes]) -> None:
        inside.append(trace.get_current_span().get_span_context())
        handled.set()

    instrument(engine, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    await engine.start()
    try:
        with tracer.start_as_current_span("request") as request:
            metadata = await engine.send("orders", value=b"book", key=b"user-1")
        await asyncio.wait_for(handled.wait(), 5)
    finally:
        await engine.stop()
    (produced,) = by_kind(exporter, SpanKind.PRODUCER)
    (consumed,) = by_kind(exporter, SpanKind.CONSUMER)
    assert produced.name == "send orders"
    assert produced.parent is not None
    assert produced.parent.span_id == request.get_span_context().span_id
    assert dict(produced.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "orders",
        "messaging.kafka.message.key": "user-1",
        "messaging.destination.partition.id": str(metadata.partition),
        "messaging.kafka.offset": metadata.offset,
    }
    assert consumed.name == "process orders"
    assert consumed.context.trace_id == request.get_span_context().trace_id
    assert consumed.parent is not None
    assert consumed.parent.span_id == produced.context.span_id
    assert dict(consumed.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "orders",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "messaging.consumer.group.name": "shop",
        "messaging.kafka.message.key": "user-1",
    }
    assert inside == [consumed.context]  # the handler runs inside its span
    (stored,) = cluster.records(TopicPartition("orders", 0))
    traceparent = dict(stored.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == format(consumed.context.trace_id, "032x")


async def test_a_handler_error_is_recorded_on_its_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The exception is an event on the span, the status ERROR, error.type set."""
    provider, exporter = spans
    cluster = MemoryCluster()
    cluster.append("orders", b"x")
    stopped = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster), after_stop=[stopped.set])

    @engine.stream("orders", group_id="g", auto_offset_reset="earliest", error_policy="stop_engine")
    async def fail(cr: ConsumerRecord[bytes, bytes]) -> None:
        raise ValueError("no stock")

    instrument(engine, tracer_provider=provider)
    await engine.start()
    try:
        await asyncio.wait_for(stopped.wait(), 5)
    finally:
        await engine.stop()
    (consumed,) = by_kind(exporter, SpanKind.CONSUMER)
    assert consumed.status.status_code is StatusCode.ERROR
    assert consumed.status.description == "ValueError: no stock"
    assert (consumed.attributes or {})["error.type"] == "builtins.ValueError"
    (event,) = consumed.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.message"] == "no stock"


async def test_send_many_gives_each_record_its_span_and_context(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """send_many: one PRODUCER span per record; a batch handler's span links to each."""
    provider, exporter = spans
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    got: asyncio.Queue[int] = asyncio.Queue()

    @engine.stream(
        "events", group_id="g", auto_offset_reset="earliest", get_many=GetMany(max_records=10)
    )
    async def batch(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
        for _ in crs:
            got.put_nowait(1)

    instrument(engine, tracer_provider=provider)
    await engine.start()
    try:
        await engine.send_many(
            "events", [BatchEvent(value=b"a", headers={"h": b"1"}), BatchEvent(value=b"b")]
        )
        for _ in range(2):
            await asyncio.wait_for(got.get(), 5)
    finally:
        await engine.stop()
    produced = by_kind(exporter, SpanKind.PRODUCER)
    assert [s.attributes["messaging.kafka.offset"] for s in produced if s.attributes] == [0, 1]
    records = cluster.records(TopicPartition("events", 0))
    assert dict(records[0].headers)["h"] == b"1"  # the caller's headers are kept
    consumers = by_kind(exporter, SpanKind.CONSUMER)
    linked = {link.context.span_id for span in consumers for link in span.links}
    assert linked == {span.context.span_id for span in produced}
    assert sum((s.attributes or {})["messaging.batch.message_count"] for s in consumers) == 2


async def test_instrument_twice_wraps_once_and_uninstrument_undoes_it(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A second instrument() adds no second span; uninstrument() sends untraced again."""
    provider, exporter = spans
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    instrument(engine, tracer_provider=provider)
    instrument(engine, tracer_provider=provider)
    assert [m.middleware for m in handle.middlewares] == [TracingMiddleware]
    await engine.start()
    try:
        await engine.send("t", value=b"1")
        uninstrument(engine)
        await engine.send("t", value=b"2")
    finally:
        await engine.stop()
    assert len(by_kind(exporter, SpanKind.PRODUCER)) == 1
    assert handle.middlewares == []
    second = cluster.records(TopicPartition("t", 0))[1]
    assert "traceparent" not in dict(second.headers)


def test_kstreams_does_not_import_opentelemetry_unless_asked() -> None:
    """Tracing costs nothing when not enabled: importing kstreams loads no opentelemetry."""
    code = "import sys, kstreams; print([m for m in sys.modules if m.startswith('opentelemetry')])"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_streams_added_after_instrument_are_traced_too(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A stream declared after instrument(), even on a running engine, gets its span."""
    provider, exporter = spans
    cluster = MemoryCluster()
    engine = instrument(create_engine(backend=Memory(cluster=cluster)), tracer_provider=provider)
    await engine.start()
    handled = asyncio.Event()
    try:

        @engine.stream("late", group_id="g", auto_offset_reset="earliest")
        async def late(cr: ConsumerRecord[bytes, bytes]) -> None:
            handled.set()

        await late.start()
        await engine.send("late", value=b"x")
        await asyncio.wait_for(handled.wait(), 5)
    finally:
        await engine.stop()
    assert [m.middleware for m in late.middlewares] == [TracingMiddleware]
    assert [s.name for s in by_kind(exporter, SpanKind.CONSUMER)] == ["process late"]
    uninstrument(engine)
    assert "add_stream" not in vars(engine)


class BatchingProducer:
    """A memory producer port with ``send_batch``, as the confluent adapter has."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send_batch(
        self, topic: str, records: Any, *, partition: Any = None, timestamp_ms: Any = None
    ) -> Any:
        self.batches += 1
        deliveries = [
            await self.inner.send(
                topic, value, key, partition=partition, timestamp_ms=timestamp_ms, headers=headers
            )
            for value, key, headers in records
        ]

        async def outcomes() -> list[Any]:
            return [await delivery for delivery in deliveries]

        return outcomes()


class BatchingMemory(Memory):
    """Memory settings whose producers deliver batches (the ``send_batch`` path)."""

    def create_producer(self, options: Any) -> Any:
        port = BatchingProducer(super().create_producer(options))
        self.ports.append(port)
        return port


async def test_send_many_on_a_batch_delivering_client_is_traced_per_record(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Through send_batch too, each record gets its PRODUCER span and its own traceparent."""
    provider, exporter = spans
    cluster = MemoryCluster()
    backend = BatchingMemory(cluster=cluster)
    object.__setattr__(backend, "ports", [])
    engine = instrument(create_engine(backend=backend), tracer_provider=provider)
    await engine.start()
    try:
        results = await engine.send_many("t", [BatchEvent(value=b"a"), BatchEvent(value=b"b")])
    finally:
        await engine.stop()
    assert backend.ports[0].batches == 1  # type: ignore[attr-defined]
    produced = by_kind(exporter, SpanKind.PRODUCER)
    assert [(s.attributes or {})["messaging.kafka.offset"] for s in produced] == [
        r.offset for r in results
    ]
    parents = [dict(r.headers)["traceparent"] for r in cluster.records(TopicPartition("t", 0))]
    assert [p.decode().split("-")[2] for p in parents] == [
        format(s.context.span_id, "016x") for s in produced
    ]
