"""Small public types: what a handler can ask for, and what ``send_many`` takes.

The names kpn/kstreams has in this module are here too: ``Headers`` (headers
as a user sends them), ``EncodedHeaders`` (as a record carries them),
``ConsumerRecord``, ``Send``, ``SendMany``, ``NextMiddlewareCall``,
``StreamFunc``, ``EngineHooks``, ``TimestampType`` and ``Deprecated``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar

from kstreams.exceptions import InvalidArgumentError
from kstreams.records import ConsumerRecord, RecordMetadata
from kstreams.records import Headers as EncodedHeaders

#: Headers as users give them: a mapping or pairs; str values are UTF-8 encoded.
HeadersInput = Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]]
#: kpn/kstreams' name for the headers a user sends.
Headers = HeadersInput
#: A stream's handler.
StreamFunc = Callable[..., Any]
#: What ``create_engine(on_startup=...)`` and the other hook arguments take.
EngineHooks = Sequence[Callable[[], Any]]
#: What a middleware calls to hand a record (or a batch) on.
NextMiddlewareCall = Callable[[Any], Awaitable[Any]]
#: ``ConsumerRecord.timestamp_type``: 0 for CreateTime, 1 for LogAppendTime.
TimestampType = Literal[0, 1]

D = TypeVar("D")
#: Marks a parameter kept for old code; the annotation is the type itself.
Deprecated = Annotated[D, "deprecated"]


class Send(Protocol):
    """The engine's ``send``; annotate a handler parameter with it to receive it."""

    async def __call__(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersInput | None = None,
        **kwargs: Any,
    ) -> RecordMetadata: ...


class SendMany(Protocol):
    """The engine's ``send_many``; annotate a handler parameter with it to receive it."""

    async def __call__(
        self,
        topic: str,
        batch_events: Sequence[BatchEvent],
        partition: int | None = None,
        timestamp_ms: int | None = None,
        serializer: Any = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> list[RecordMetadata]: ...


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One record of ``engine.send_many``."""

    value: Any = None
    key: Any = None
    headers: HeadersInput | None = None


@dataclass(frozen=True, slots=True)
class GetMany:
    """Hand a stream's handler batches: up to ``max_records``, waiting at most
    ``timeout_ms`` for the first record of a batch."""

    max_records: int | None = None
    timeout_ms: int = 500

    def __post_init__(self) -> None:
        if self.max_records is not None and self.max_records <= 0:
            raise InvalidArgumentError(
                f"GetMany max_records must be positive, got {self.max_records!r}"
            )
        if self.timeout_ms < 0:
            raise InvalidArgumentError(f"GetMany timeout_ms must be >= 0, got {self.timeout_ms!r}")


def encode_headers(headers: HeadersInput | None) -> tuple[tuple[str, bytes], ...]:
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple(
        (key, value.encode() if isinstance(value, str) else bytes(value)) for key, value in pairs
    )


__all__ = [
    "BatchEvent",
    "ConsumerRecord",
    "Deprecated",
    "EncodedHeaders",
    "EngineHooks",
    "GetMany",
    "Headers",
    "HeadersInput",
    "NextMiddlewareCall",
    "Send",
    "SendMany",
    "StreamFunc",
    "TimestampType",
    "encode_headers",
]
