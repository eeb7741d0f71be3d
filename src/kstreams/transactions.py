"""Exactly-once streams: what the handler sends and the offsets it consumed, in one transaction.

A stream declared with ``processing_guarantee="exactly_once"`` owns a
transactional producer. Everything its handler produces (the injected
``send``, or ``engine.send`` called from the handler's task) goes into the
open transaction; the stream's commits become ``send_offsets_to_transaction``
plus ``commit_transaction``, made between records (at least every
``auto_commit_interval_ms``, default 100 ms), on revoke and on stop. A
handler that raises aborts the transaction: none of its outputs become
visible to ``read_committed`` consumers, its offsets are not committed, and
the stream starts again from the last committed offset.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from kstreams.exceptions import ConfigError, KafkaError, StreamError
from kstreams.injection import HandlerKind
from kstreams.producer import Producer
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.ports import (
        Backend,
        ConsumerPort,
        GroupMetadata,
        TransactionalConsumerPort,
        TransactionalProducerPort,
    )
    from kstreams.streams import Stream

logger = logging.getLogger("kstreams.transactions")

Guarantee = Literal["at_least_once", "exactly_once"]
GUARANTEES: tuple[Guarantee, ...] = ("at_least_once", "exactly_once")
#: How often an exactly-once stream commits its transaction unless told otherwise (as Kafka
#: Streams does).
EXACTLY_ONCE_COMMIT_INTERVAL_MS = 100
#: Backends whose producers implement ``TransactionalProducerPort``.
TRANSACTIONAL_BACKENDS = frozenset({"memory"})

#: The exactly-once transaction of the stream whose task is running, for ``engine.send``.
current: contextvars.ContextVar[StreamTransaction | None] = contextvars.ContextVar(
    "kstreams_transaction", default=None
)


def check_guarantee(stream: Stream, guarantee: Any, options: dict[str, Any]) -> Guarantee:
    """Validate ``processing_guarantee`` against the rest of the declaration."""
    if guarantee not in GUARANTEES:
        raise StreamError(
            f"stream {stream.name!r}: processing_guarantee must be one of {GUARANTEES}, "
            f"got {guarantee!r}"
        )
    checked: Guarantee = guarantee
    if checked == "at_least_once":
        return checked
    problems = []
    if stream.group_id is None:
        problems.append("a group_id (offsets are committed in the group's name)")
    if options.get("enable_auto_commit") is False:
        problems.append("enable_auto_commit left on (the transaction commits the offsets)")
    if stream.concurrency > 1:
        problems.append("concurrency=1 (a transaction follows one record after the other)")
    if stream.spec.is_generator:
        problems.append("a handler that returns (a generator's caller decides, not the stream)")
    elif stream.spec.kind is HandlerKind.STREAM:
        problems.append(
            "a typed handler, async def f(cr: ConsumerRecord, send: Send) (the stream commits "
            "between records; an 'async for' loop has no such point)"
        )
    if problems:
        raise StreamError(
            f"stream {stream.name!r}: processing_guarantee='exactly_once' needs "
            + "; ".join(problems)
        )
    options.setdefault("auto_commit_interval_ms", EXACTLY_ONCE_COMMIT_INTERVAL_MS)
    options.setdefault("isolation_level", "read_committed")
    return checked


def check_backend(backend: Backend) -> None:
    """Raise ``ConfigError`` naming ``backend`` if it has no transactions (yet)."""
    if backend.name not in TRANSACTIONAL_BACKENDS:
        available = ", ".join(sorted(TRANSACTIONAL_BACKENDS))
        raise ConfigError(
            f"processing_guarantee='exactly_once' needs transactions, which the {backend.name} "
            f"backend does not provide yet (available on: {available})"
        )


async def open_transaction(
    stream: Stream, backend: Backend, consumer: StreamConsumer, port: ConsumerPort
) -> StreamTransaction:
    """A started transaction for ``stream``'s new ``consumer``, which commits through it.

    A new one per consumer (a RESTART makes a new consumer): starting it
    fences the stream's previous producer, whose open transaction is aborted.
    """
    previous = stream._transaction
    if previous is not None:
        await previous.stop()
    transaction = StreamTransaction.for_stream(stream, backend)
    await transaction.start()
    group = cast("TransactionalConsumerPort", port)

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        await transaction.commit(offsets, group.group_metadata())

    consumer.committer = commit
    return transaction


def exactly_once_handler(
    stream: Stream, consumer: StreamConsumer, handler: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    """``handler``, then the transaction's commit once ``auto_commit_interval_ms`` passed.

    The commit is made here, between records in the stream's own task, never
    while a handler is half-way (its outputs would be committed without its
    offset). A record the RESTART policy skips is passed over here.
    """
    interval_s = stream.auto_commit_interval_ms / 1000
    last = time.monotonic()
    skip = stream._skip

    async def handle(cr: Any) -> Any:
        nonlocal last
        records = cr if isinstance(cr, list) else [cr]
        if skip and not isinstance(cr, list):
            where = (cr.topic, cr.partition, cr.offset)
            if where in skip:
                skip.discard(where)
                return None
        result = await handler(cr)
        if time.monotonic() - last >= interval_s:
            last = time.monotonic()
            await consumer.commit_handled(
                {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
            )
        return result

    return handle


class StreamTransaction:
    """One exactly-once stream's transactional producer and its open transaction."""

    def __init__(self, producer: Producer, transactional_id: str) -> None:
        self.producer = producer
        self.transactional_id = transactional_id
        self._open = False
        self._sent = False
        self._lock = asyncio.Lock()

    @classmethod
    def for_stream(cls, stream: Stream, backend: Backend) -> StreamTransaction:
        check_backend(backend)
        engine = stream.engine
        options = dict(engine.producer.options) if engine is not None else {}
        transactional_id = stream.transactional_id or (
            f"{stream.group_id}.{stream.name}.{uuid.uuid4().hex[:12]}"
        )
        options["transactional_id"] = transactional_id
        serializer = engine.serializer if engine is not None else None
        return cls(Producer(backend, serializer=serializer, options=options), transactional_id)

    @property
    def _port(self) -> TransactionalProducerPort:
        return cast("TransactionalProducerPort", self.producer._require_port())

    async def start(self) -> None:
        """Register the transactional id (fencing its older producers) and open a transaction."""
        await self.producer.start()
        await self._port.begin_transaction()
        self._open = True

    def mark_sent(self) -> None:
        """Something is being sent in the open transaction: commit it even without offsets."""
        self._sent = True

    async def commit(self, offsets: Mapping[TopicPartition, int], group: GroupMetadata) -> None:
        """Commit what was sent with ``offsets``, then open the next transaction.

        On failure (the group rebalanced away, the producer was fenced) the
        transaction is aborted and the error raised: nothing of it is visible.
        """
        async with self._lock:
            if not offsets and not self._sent:
                return
            port = self._port
            try:
                if offsets:
                    await port.send_offsets_to_transaction(offsets, group)
                await port.commit_transaction()
            except KafkaError:
                await self._abort_locked()
                raise
            self._sent = False
            await port.begin_transaction()

    async def abort(self) -> None:
        """Drop the open transaction (its outputs stay invisible) and open the next one."""
        async with self._lock:
            await self._abort_locked()

    async def _abort_locked(self) -> None:
        port = self._port
        self._sent = False
        try:
            await port.abort_transaction()
        except KafkaError as exc:
            logger.warning("transactional id %s: abort failed: %r", self.transactional_id, exc)
        await port.begin_transaction()

    async def stop(self) -> None:
        """Abort what is still open (a stop commits first: this is what it left) and close."""
        try:
            if self.producer.started:
                async with self._lock:
                    try:
                        await self._port.abort_transaction()
                    except KafkaError as exc:
                        logger.warning(
                            "transactional id %s: abort on stop failed: %r",
                            self.transactional_id,
                            exc,
                        )
        finally:
            await self.producer.stop()
