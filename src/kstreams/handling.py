"""From a user's handler to the one-argument callable a stream awaits per record or batch.

The chain is: deserialization, then the middlewares (outermost first), then
the handler. A record that fails to deserialize is not dropped by the stream:
it goes down the middleware chain as consumed, and the
``DeserializationError`` is raised where the handler would have been called,
so middlewares (the dead-letter one) see it exactly as a handler's failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from kstreams.exceptions import DeserializationError
from kstreams.injection import HandlerKind, bind
from kstreams.middleware import Middleware
from kstreams.records import copy_record

if TYPE_CHECKING:
    from kstreams.ports import RawRecord
    from kstreams.records import ConsumerRecord
    from kstreams.serializers import Deserializer
    from kstreams.streams import Stream

Handler = Callable[[Any], Awaitable[Any]]


class Deserialization:
    """A stream's deserializers: the engine's (or the stream's) and aiokafka's key/value ones."""

    def __init__(
        self,
        deserializer: Deserializer | None,
        key_deserializer: Callable[[Any], Any] | None,
        value_deserializer: Callable[[Any], Any] | None,
    ) -> None:
        self.deserializer = deserializer
        self.key_deserializer = key_deserializer
        self.value_deserializer = value_deserializer

    def __bool__(self) -> bool:
        return bool(self.deserializer or self.key_deserializer or self.value_deserializer)

    async def record(self, record: RawRecord) -> ConsumerRecord[Any, Any]:
        try:
            out: ConsumerRecord[Any, Any] = record
            key_of, value_of = self.key_deserializer, self.value_deserializer
            if key_of is not None or value_of is not None:
                out = copy_record(
                    out,
                    key=key_of(out.key) if key_of else out.key,
                    value=value_of(out.value) if value_of else out.value,
                )
            if self.deserializer is not None:
                if out is record:
                    # A deserializer may assign cr.value (kpn's do): never on the record
                    # in hand, which the dead-letter middleware sends as consumed.
                    out = copy_record(record)
                out = await self.deserializer.deserialize(out)
            return out
        except DeserializationError:
            raise  # it names the record already
        except Exception as exc:
            raise DeserializationError(
                f"record {record.topic}[{record.partition}]@{record.offset} could not be "
                f"deserialized: {exc!r}"
            ) from exc

    async def batch(self, records: Sequence[RawRecord]) -> list[ConsumerRecord[Any, Any]]:
        return [await self.record(r) for r in records]


def wrap_middlewares(
    handler: Handler, middlewares: Sequence[Middleware], *, send: Any, stream: Stream
) -> Handler:
    for middleware in reversed(middlewares):
        handler = middleware.build(handler, send=send, stream=stream)
    return handler


def build_handler(stream: Stream, send: Any, deserialization: Deserialization) -> Handler:
    """The stream's per-record (or per-batch) callable: deserialize, middlewares, handler."""
    handler = wrap_middlewares(
        bind(stream.spec, stream.func, stream=stream, send=send),
        stream.middlewares,
        send=send,
        stream=stream,
    )
    if not deserialization:
        return handler
    convert = (
        deserialization.batch if stream.spec.kind is HandlerKind.BATCH else deserialization.record
    )
    if not stream.middlewares:

        async def deserialize_then_handle(raw: Any) -> Any:
            return await handler(await convert(raw))

        return deserialize_then_handle

    # The chain a poison pill goes down: the middlewares, then its own error.
    poisoned: dict[int, DeserializationError] = {}

    async def raise_poison(raw: Any) -> Any:
        raise poisoned[id(raw)]

    failing = wrap_middlewares(raise_poison, stream.middlewares, send=send, stream=stream)

    async def deserialize_or_fail(raw: Any) -> Any:
        try:
            value = await convert(raw)
        except DeserializationError as exc:
            poisoned[id(raw)] = exc
            try:
                return await failing(raw)
            finally:
                del poisoned[id(raw)]
        return await handler(value)

    return deserialize_or_fail
