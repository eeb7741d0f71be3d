"""OpenTelemetry tracing for streams and the producer (extra ``opentelemetry``).

``instrument(engine)`` traces an engine: one PRODUCER span per record sent
(``send`` and ``send_many``) and one CONSUMER span per record handled by each
typed handler its streams have, following OpenTelemetry's semantic
conventions for Kafka messaging. The W3C trace context (``traceparent``,
``tracestate`` and baggage, or whatever the global propagator writes) is
injected into each record's headers on send and extracted on consume, so a
trace continues across services::

    engine = create_engine(title="shop")

    @engine.stream("orders", group_id="shop")
    async def ship(cr: ConsumerRecord) -> None: ...

    instrument(engine)  # streams declared before or after are traced alike

Spans carry ``messaging.system``, ``messaging.operation.type`` /
``.name``, ``messaging.destination.name``,
``messaging.destination.partition.id``, ``messaging.kafka.offset``,
``messaging.consumer.group.name`` and ``messaging.kafka.message.key`` (when
the key is text). A handler's exception is recorded on its span, which is
marked as an error, and propagates unchanged. With ``get_many`` one span
covers the batch, linked to the context of each record in it. A stream
iterated with ``async for`` has no handler to wrap: its records are not
traced (``TracingMiddleware`` can also be given to typed handlers by hand).

Nothing is imported or wrapped until ``instrument`` is called: an engine
that is not instrumented pays nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from kstreams._version import __version__
from kstreams.injection import HandlerKind
from kstreams.middleware import BaseMiddleware, Middleware, NextMiddlewareCall
from kstreams.records import ConsumerRecord, RecordMetadata
from kstreams.types import BatchEvent

if TYPE_CHECKING:
    from kstreams.engine import StreamEngine
    from kstreams.streams import Stream
    from kstreams.types import HeadersInput, Send

# The attribute names of the messaging semantic conventions.
SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
GROUP = "messaging.consumer.group.name"
KEY = "messaging.kafka.message.key"
TOMBSTONE = "messaging.kafka.message.tombstone"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"

TRACER_NAME = "kstreams"


def _tracer(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    """Reads a record's ``(name, bytes)`` header pairs for the propagator."""

    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        found = [
            value.decode("latin-1") if isinstance(value, bytes) else str(value)
            for name, value in carrier
            if name.lower() == key
        ]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _HeaderGetter()


def _key_text(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            return None  # a binary key is not a useful attribute
    return None


def _record_attributes(record: ConsumerRecord[Any, Any], group: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        SYSTEM: "kafka",
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: record.topic,
        PARTITION: str(record.partition),
        OFFSET: record.offset,
    }
    if group is not None:
        attributes[GROUP] = group
    key = _key_text(record.key)
    if key is not None:
        attributes[KEY] = key
    if record.value is None:
        attributes[TOMBSTONE] = True
    return attributes


def _failed(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute(ERROR_TYPE, f"{type(exc).__module__}.{type(exc).__qualname__}")
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class TracingMiddleware(BaseMiddleware):
    """A CONSUMER span around each record (or batch) the handler gets; put it first."""

    def __init__(
        self,
        *,
        next_call: NextMiddlewareCall,
        send: Send,
        stream: Stream,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__(next_call=next_call, send=send, stream=stream)
        self.tracer = _tracer(tracer_provider)

    async def __call__(self, cr: Any) -> Any:
        if isinstance(cr, list):
            return await self._batch(cr)
        parent = propagate.extract(cr.headers, getter=_GETTER)
        with self.tracer.start_as_current_span(
            f"process {cr.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=_record_attributes(cr, self.stream.group_id),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await self.next_call(cr)
            except BaseException as exc:
                _failed(span, exc)
                raise

    async def _batch(self, records: list[ConsumerRecord[Any, Any]]) -> Any:
        links = []
        for record in records:
            linked = trace.get_current_span(propagate.extract(record.headers, getter=_GETTER))
            if linked.get_span_context().is_valid:
                links.append(Link(linked.get_span_context()))
        topics = sorted({record.topic for record in records})
        attributes: dict[str, Any] = {
            SYSTEM: "kafka",
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            BATCH_COUNT: len(records),
        }
        if len(topics) == 1:
            attributes[DESTINATION] = topics[0]
        if self.stream.group_id is not None:
            attributes[GROUP] = self.stream.group_id
        with self.tracer.start_as_current_span(
            f"process {topics[0] if len(topics) == 1 else 'batch'}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await self.next_call(records)
            except BaseException as exc:
                _failed(span, exc)
                raise


Enqueue = Callable[..., Awaitable[Awaitable[RecordMetadata]]]


def _with_context(
    headers: HeadersInput | None, context: otel_context.Context
) -> list[tuple[str, str | bytes]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    pairs: Iterable[tuple[str, Any]] = (
        headers.items() if isinstance(headers, Mapping) else headers or ()
    )
    # The record's own context replaces any the caller copied from elsewhere.
    kept = [(name, value) for name, value in pairs if name.lower() not in carrier]
    return [*kept, *carrier.items()]


def _send_span(
    tracer: trace.Tracer, topic: str, key: Any, value: Any, client_id: str | None
) -> Any:
    attributes: dict[str, Any] = {
        SYSTEM: "kafka",
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
        DESTINATION: topic,
    }
    key_text = _key_text(key)
    if key_text is not None:
        attributes[KEY] = key_text
    if value is None:
        attributes[TOMBSTONE] = True
    if client_id is not None:
        attributes[CLIENT_ID] = client_id
    return tracer.start_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes)


def _delivered(span: trace.Span, metadata: RecordMetadata) -> None:
    span.set_attribute(PARTITION, str(metadata.partition))
    span.set_attribute(OFFSET, metadata.offset)


def traced_enqueue(enqueue: Enqueue, tracer: trace.Tracer, client_id: str | None) -> Enqueue:
    """``Producer.enqueue`` behind a PRODUCER span per record, ended by its acknowledgement."""

    async def traced(
        topic: str, value: Any = None, key: Any = None, *args: Any, **kwargs: Any
    ) -> Awaitable[RecordMetadata]:
        span = _send_span(tracer, topic, key, value, client_id)
        if "headers" in kwargs or len(args) < 3:
            kwargs["headers"] = _with_context(
                kwargs.get("headers"), trace.set_span_in_context(span)
            )
        else:  # headers given positionally, after partition and timestamp_ms
            args = (*args[:2], _with_context(args[2], trace.set_span_in_context(span)), *args[3:])
        try:
            delivery = await enqueue(topic, value, key, *args, **kwargs)
        except BaseException as exc:
            _failed(span, exc)
            span.end()
            raise
        return _acknowledged(delivery, span)

    return traced


SendBatch = Callable[..., Awaitable[list[RecordMetadata]]]


def traced_send_batch(
    send_batch: SendBatch, tracer: trace.Tracer, client_id: str | None
) -> SendBatch:
    """``Producer._send_batch`` (``send_many`` on a client with batch delivery) behind a
    PRODUCER span per record, all ended when the batch is acknowledged."""

    async def traced(
        port: Any, topic: str, batch_events: Sequence[BatchEvent], *args: Any
    ) -> list[RecordMetadata]:
        spans = []
        events = []
        for event in batch_events:
            span = _send_span(tracer, topic, event.key, event.value, client_id)
            headers = _with_context(event.headers, trace.set_span_in_context(span))
            events.append(BatchEvent(value=event.value, key=event.key, headers=headers))
            spans.append(span)
        try:
            results = await send_batch(port, topic, events, *args)
        except BaseException as exc:
            for span in spans:
                _failed(span, exc)  # which record failed is not known: the batch did
                span.end()
            raise
        for span, metadata in zip(spans, results, strict=True):
            _delivered(span, metadata)
            span.end()
        return results

    return traced


async def _acknowledged(delivery: Awaitable[RecordMetadata], span: trace.Span) -> RecordMetadata:
    try:
        metadata = await delivery
    except BaseException as exc:
        _failed(span, exc)
        raise
    else:
        _delivered(span, metadata)
        return metadata
    finally:
        span.end()


def _trace_stream(stream: Stream, tracer_provider: trace.TracerProvider | None) -> None:
    if stream.spec.kind is HandlerKind.STREAM or stream.spec.is_generator:
        return  # an 'async for' stream or a generator has no handler to wrap
    if any(m.middleware is TracingMiddleware for m in stream.middlewares):
        return
    stream.middlewares.insert(0, Middleware(TracingMiddleware, tracer_provider=tracer_provider))


def instrument(
    engine: StreamEngine, *, tracer_provider: trace.TracerProvider | None = None
) -> StreamEngine:
    """Trace ``engine``'s producer and the typed handlers of its streams, those it has
    and those added later. Calling it again wraps nothing twice. Returns the engine."""
    tracer = _tracer(tracer_provider)
    producer = engine.producer
    if "enqueue" not in vars(producer):
        client_id = producer.options.get("client_id")
        # Instance attributes: Producer.send and send_many call self.enqueue, and
        # engine.stream(...) calls self.add_stream.
        producer.enqueue = traced_enqueue(  # type: ignore[method-assign,assignment]
            producer.enqueue, tracer, client_id
        )
        # send_many on a client with batch delivery bypasses enqueue.
        producer._send_batch = traced_send_batch(  # type: ignore[method-assign,assignment]
            producer._send_batch, tracer, client_id
        )
    if "add_stream" not in vars(engine):
        add_stream = engine.add_stream

        def traced_add_stream(stream: Stream, *args: Any, **kwargs: Any) -> None:
            _trace_stream(stream, tracer_provider)
            add_stream(stream, *args, **kwargs)

        engine.add_stream = traced_add_stream  # type: ignore[method-assign]
    for stream in engine.streams:
        _trace_stream(stream, tracer_provider)
    return engine


def uninstrument(engine: StreamEngine) -> None:
    """Undo ``instrument``; running streams pick the change up when they next start."""
    vars(engine.producer).pop("enqueue", None)
    vars(engine.producer).pop("_send_batch", None)
    vars(engine).pop("add_stream", None)
    for stream in engine.streams:
        stream.middlewares = [
            m for m in stream.middlewares if m.middleware is not TracingMiddleware
        ]


__all__ = ["TracingMiddleware", "instrument", "traced_enqueue", "traced_send_batch", "uninstrument"]
