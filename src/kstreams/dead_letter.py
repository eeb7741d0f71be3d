"""Retries, then a dead-letter topic: a record that keeps failing is set aside, not lost.

Declared like any middleware, best first in the list so that it also
catches what the other middlewares raise::

    @engine.stream(
        "orders",
        group_id="billing",
        middlewares=[Middleware(DeadLetterMiddleware, topic="orders-dlq", retries=3)],
    )
    async def bill(cr: ConsumerRecord) -> None: ...

A failing record is tried again up to ``retries`` times, waiting
``backoff_ms`` before the first retry and twice as long before each next
one (at most ``max_backoff_ms``). Then it is produced to ``topic`` as it was
consumed (its raw key and value bytes, before any deserializer, and its
headers) plus the ``kstreams.dlq.*`` headers below, and the stream moves
on: the record counts as handled only once the dead-letter topic has
acknowledged it. If that produce fails, its error propagates and the
stream's error policy applies, with the record not committed. Either way
nothing is lost.

With ``get_many``, the whole batch is retried, then every record of it is
dead-lettered. A record that cannot be deserialized (by the stream's
deserializer, or into the handler's pydantic model) comes down the chain as
a ``DeserializationError`` and is dead-lettered at once: it would fail the
same way on every retry. If the
stream is asked to stop during a back-off, the record is left unhandled
and is read again by the next consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kstreams.exceptions import DeserializationError, InvalidArgumentError
from kstreams.middleware import BaseMiddleware, NextMiddlewareCall
from kstreams.records import ConsumerRecord
from kstreams.types import BatchEvent

if TYPE_CHECKING:
    from kstreams.ports import RawRecord
    from kstreams.streams import Stream
    from kstreams.types import Send

logger = logging.getLogger("kstreams.dead_letter")

#: The error headers added to a dead-lettered record (UTF-8 text values).
HEADER_PREFIX = "kstreams.dlq."
EXCEPTION_HEADER = HEADER_PREFIX + "exception"  #: e.g. ``builtins.ValueError``
MESSAGE_HEADER = HEADER_PREFIX + "message"  #: ``str(exc)``, at most 4096 characters
TOPIC_HEADER = HEADER_PREFIX + "topic"  #: the topic the record was consumed from
PARTITION_HEADER = HEADER_PREFIX + "partition"
OFFSET_HEADER = HEADER_PREFIX + "offset"
TIMESTAMP_HEADER = HEADER_PREFIX + "timestamp"  #: the original record's, in ms
ATTEMPTS_HEADER = HEADER_PREFIX + "attempts"  #: how many times it was tried

_MAX_MESSAGE = 4096


def error_headers(
    record: ConsumerRecord[Any, Any], exc: BaseException, attempts: int
) -> list[tuple[str, str | bytes]]:
    """The ``kstreams.dlq.*`` headers describing why ``record`` was dead-lettered."""
    kind = type(exc)
    return [
        (EXCEPTION_HEADER, f"{kind.__module__}.{kind.__qualname__}"),
        (MESSAGE_HEADER, str(exc)[:_MAX_MESSAGE]),
        (TOPIC_HEADER, record.topic),
        (PARTITION_HEADER, str(record.partition)),
        (OFFSET_HEADER, str(record.offset)),
        (TIMESTAMP_HEADER, str(record.timestamp)),
        (ATTEMPTS_HEADER, str(attempts)),
    ]


class DeadLetterMiddleware(BaseMiddleware):
    """Retry a failing record ``retries`` times with exponential back-off, then produce it
    to the dead-letter ``topic`` and go on (see the module documentation)."""

    def __init__(
        self,
        *,
        next_call: NextMiddlewareCall,
        send: Send,
        stream: Stream,
        topic: str,
        retries: int = 3,
        backoff_ms: int = 100,
        max_backoff_ms: int = 10_000,
    ) -> None:
        super().__init__(next_call=next_call, send=send, stream=stream)
        self.check_options(
            topic=topic, retries=retries, backoff_ms=backoff_ms, max_backoff_ms=max_backoff_ms
        )
        self.topic = topic
        self.retries = retries
        self.backoff_ms = backoff_ms
        self.max_backoff_ms = max_backoff_ms

    @classmethod
    def check_options(cls, **options: Any) -> None:
        topic = options.get("topic")
        if not isinstance(topic, str) or not topic:
            raise InvalidArgumentError(f"DeadLetterMiddleware needs a topic name, got {topic!r}")
        for name in ("retries", "backoff_ms", "max_backoff_ms"):
            value = options.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(
                    f"DeadLetterMiddleware {name} must be an int >= 0, got {value!r}"
                )

    def backoff_s(self, retry: int) -> float:
        """How long to wait before retry number ``retry`` (counted from 0)."""
        return min(self.backoff_ms << retry, self.max_backoff_ms) / 1000

    async def __call__(self, cr: Any) -> Any:
        retry = 0
        while True:
            try:
                return await self.next_call(cr)
            except Exception as exc:
                # A value that failed validation fails it again: no retry for it.
                if retry >= self.retries or isinstance(exc, DeserializationError):
                    await self._dead_letter(cr, exc, attempts=retry + 1)
                    return None
                delay = self.backoff_s(retry)
                retry += 1
                logger.warning(
                    "stream %r: %s failed (%r); retry %d of %d in %.3fs",
                    self.stream.name,
                    _describe(cr),
                    exc,
                    retry,
                    self.retries,
                    delay,
                )
                if await self.stream.wait_for_stop(delay):
                    raise

    async def _dead_letter(self, cr: Any, exc: Exception, *, attempts: int) -> None:
        records: Sequence[ConsumerRecord[Any, Any]] = cr if isinstance(cr, list) else [cr]
        logger.error(
            "stream %r: %s failed %d times (%r); producing it to %r",
            self.stream.name,
            _describe(cr),
            attempts,
            exc,
            self.topic,
        )
        events = [self._event(record, exc, attempts) for record in records]
        engine = self.stream.engine
        if len(events) > 1 and engine is not None:
            await engine.send_many(self.topic, events, serializer=None)
            return
        for event in events:
            await self.send(
                self.topic, value=event.value, key=event.key, headers=event.headers, serializer=None
            )

    def _event(self, record: ConsumerRecord[Any, Any], exc: Exception, attempts: int) -> BatchEvent:
        raw: RawRecord = self.stream.raw_record(record)
        for field, data in (("key", raw.key), ("value", raw.value)):
            if data is not None and not isinstance(data, bytes):
                raise TypeError(
                    f"cannot dead-letter {_describe(record)}: its {field} is a "
                    f"{type(data).__name__}, not the bytes it was consumed as (a middleware "
                    "before DeadLetterMiddleware changed it)"
                )
        headers: list[tuple[str, str | bytes]] = [
            (name, value) for name, value in raw.headers if not name.startswith(HEADER_PREFIX)
        ]
        headers += error_headers(record, exc, attempts)
        return BatchEvent(value=raw.value, key=raw.key, headers=headers)


def _describe(cr: Any) -> str:
    if isinstance(cr, list):
        return f"a batch of {len(cr)} records"
    if isinstance(cr, ConsumerRecord):
        return f"record {cr.topic}[{cr.partition}]@{cr.offset}"
    return repr(cr)


__all__ = [
    "ATTEMPTS_HEADER",
    "EXCEPTION_HEADER",
    "HEADER_PREFIX",
    "MESSAGE_HEADER",
    "OFFSET_HEADER",
    "PARTITION_HEADER",
    "TIMESTAMP_HEADER",
    "TOPIC_HEADER",
    "DeadLetterMiddleware",
    "error_headers",
]
