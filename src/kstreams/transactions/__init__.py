"""Exactly-once streams: what the handler sends and the offsets it consumed, in one transaction.

A stream declared with ``processing_guarantee="exactly_once"`` owns one
transactional producer per input partition it is assigned
(:mod:`.partitioned` says why). Everything its handler produces for a record
(the injected ``send``, or ``engine.send`` called from the handler's task)
goes into the open transaction of that record's partition; the stream's
commits become ``send_offsets_to_transaction`` plus ``commit_transaction`` on
each partition, made between records (at least every
``auto_commit_interval_ms``, default 100 ms), on revoke and on stop. A
handler that raises aborts the transactions: none of their outputs become
visible to ``read_committed`` consumers, their offsets are not committed, and
the stream starts again from the last committed offsets.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    KStreamsError,
    ProducerFencedError,
    StreamError,
)
from kstreams.injection import HandlerKind
from kstreams.records import TopicPartition
from kstreams.transactions.partitioned import (
    PartitionTransaction,
    StreamTransaction,
    transactional_id,
)

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.ports import Backend, ConsumerPort
    from kstreams.streams import Stream

logger = logging.getLogger("kstreams.transactions")

Guarantee = Literal["at_least_once", "exactly_once"]
GUARANTEES: tuple[Guarantee, ...] = ("at_least_once", "exactly_once")
#: How often an exactly-once stream commits its transaction unless told otherwise (as Kafka
#: Streams does).
EXACTLY_ONCE_COMMIT_INTERVAL_MS = 100
#: Backends whose producers implement ``TransactionalProducerPort``.
TRANSACTIONAL_BACKENDS = frozenset({"aiokafka", "confluent", "memory"})

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
    """The transactions of ``stream``'s new ``consumer``, which commits through them.

    A new set per consumer (a RESTART makes a new consumer); the stream's
    previous one is closed first. Each partition's producer starts when the
    partition is assigned (see :mod:`.partitioned`).
    """
    check_backend(backend)
    previous = stream._transaction
    if previous is not None:
        await previous.stop()
    transaction = StreamTransaction(stream, backend, consumer, port)
    consumer.committer = transaction.commit
    return transaction


def exactly_once_handler(
    stream: Stream, consumer: StreamConsumer, handler: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    """``handler``, then the transactions' commit once ``auto_commit_interval_ms`` passed.

    The commit is made between records, never while a handler is half-way
    (its outputs would be committed without its offset): after a record when
    the interval is over, or by a timer once it is over when no record came
    since (an idle stream's last transaction must not stay open). A record the
    RESTART policy skips is passed over here. A batch handler is called once
    per partition of the batch, so that what it sends goes into that
    partition's transaction.
    """
    transaction = stream._transaction
    if transaction is None:
        raise StreamError(f"stream {stream.name!r} has no transaction")
    commits = IntervalCommits(stream.name, consumer, stream.auto_commit_interval_ms / 1000)
    transaction.on_stop(commits.cancel)
    skip = stream._skip
    gate = commits.gate

    async def handle(cr: Any) -> Any:
        records = cr if isinstance(cr, list) else [cr]
        if skip and not isinstance(cr, list):
            where = (cr.topic, cr.partition, cr.offset)
            if where in skip:
                skip.discard(where)
                return None
        async with gate:
            commits.raise_failure()
            try:
                if isinstance(cr, list):
                    result = None
                    for tp, part in _by_partition(cr).items():
                        transaction.handling = tp
                        result = await handler(part)
                else:
                    transaction.handling = TopicPartition(cr.topic, cr.partition)
                    result = await handler(cr)
            except ProducerFencedError as exc:
                # A send refused because a newer producer took the partition's id.
                raise CommitRefused(exc) from exc
            if commits.due():
                await commits.commit(
                    {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
                )
            else:
                commits.schedule()
        return result

    return handle


class CommitRefused(KStreamsError):
    """The group or the transaction coordinator refused the stream's transactions: a
    rebalance moved its partitions, or a newer producer took a partition's id (its
    commit or a send failed).

    Not the handler's failure: the stream rejoins its group with a new consumer
    and handles the aborted transactions' records again; its error policy is
    not applied.
    """


class IntervalCommits:
    """When an exactly-once stream commits: every ``interval_s``, between records."""

    def __init__(self, name: str, consumer: StreamConsumer, interval_s: float) -> None:
        self.name = name
        self.consumer = consumer
        self.interval_s = interval_s
        #: Held while a record is handled, and by the timer's commit.
        self.gate = asyncio.Lock()
        self.last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    async def commit(self, also: dict[TopicPartition, int] | None = None) -> None:
        self.last = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.consumer.commit_handled(also)
        except (CommitFailedError, ProducerFencedError) as exc:
            raise CommitRefused(exc) from exc

    def schedule(self) -> None:
        """Commit at the end of the interval unless a record does it first."""
        if self._timer is None:
            delay = max(0.0, self.last + self.interval_s - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(
            self._idle_commit(), name=f"kstreams-commit-{self.name}"
        )

    async def _idle_commit(self) -> None:
        async with self.gate:
            if self.consumer.closed or self.consumer.stopping or self._failure is not None:
                return
            try:
                await self.commit()
            except Exception as exc:
                # Raised from the next record's handling: the error policy applies.
                logger.error("stream %r: committing its transactions failed: %r", self.name, exc)
                self._failure = exc

    def raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()


def _by_partition(records: list[Any]) -> dict[TopicPartition, list[Any]]:
    parts: dict[TopicPartition, list[Any]] = {}
    for record in records:
        parts.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return parts


__all__ = [
    "EXACTLY_ONCE_COMMIT_INTERVAL_MS",
    "CommitRefused",
    "GUARANTEES",
    "TRANSACTIONAL_BACKENDS",
    "Guarantee",
    "PartitionTransaction",
    "StreamTransaction",
    "check_backend",
    "check_guarantee",
    "current",
    "exactly_once_handler",
    "open_transaction",
    "transactional_id",
]
