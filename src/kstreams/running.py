"""How a started stream runs its handler, and what its error policy does when it fails.

A mixin of :class:`~kstreams.streams.Stream`, kept apart so each module holds
one concern: ``streams`` the declaration and lifecycle, this one the task.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

from kstreams import transactions
from kstreams.concurrency import ConcurrentRunner, Ordering
from kstreams.exceptions import ConsumerStoppedError, StreamError
from kstreams.handling import Deserialization, Handler, build_handler
from kstreams.injection import HandlerKind, HandlerSpec, bind
from kstreams.middleware import Middleware
from kstreams.policies import StreamErrorPolicy
from kstreams.records import TopicPartition
from kstreams.types import GetMany

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.engine import StreamEngine
    from kstreams.ports import RawRecord
    from kstreams.streams import Stream
    from kstreams.transactions import StreamTransaction

logger = logging.getLogger("kstreams.streams")

#: RESTART back-off: first delay and cap, in seconds; doubles per restart until a record is handled.
RESTART_BACKOFF_S = (0.1, 30.0)


class HandlerRunning:
    """The stream's task: feed the handler, apply the error policy."""

    # Set by Stream.__init__ / start.
    name: str
    spec: HandlerSpec
    func: Callable[..., Any]
    engine: StreamEngine | None
    consumer: StreamConsumer | None
    middlewares: list[Middleware]
    error_policy: StreamErrorPolicy
    error: BaseException | None
    get_many: GetMany | None
    concurrency: int
    ordering: Ordering
    _stopping: bool
    _restarts: int
    _handed_since_restart: bool
    _transaction: StreamTransaction | None
    _skip: set[tuple[str, int, int]]

    if TYPE_CHECKING:

        def _deserialization(self) -> Deserialization: ...
        @property
        def _deserializing(self) -> bool: ...
        async def _close_consumer(self) -> None: ...
        async def _open_consumer(self) -> StreamConsumer: ...
        async def _stop_from_own_task(self) -> None: ...
        async def wait_for_stop(self, timeout_s: float) -> bool: ...
        def __aiter__(self) -> Stream: ...

    def _send(self) -> Any:
        if self.engine is None:
            return _no_engine_send
        return self.engine.send

    def _bind_handler(self) -> Handler:
        stream = cast("Stream", self)  # the only class this mixin is part of
        return build_handler(stream, self._send(), self._deserialization())

    def _generator(self) -> AsyncIterator[Any]:
        if self.spec.kind is HandlerKind.STREAM:
            flow: AsyncIterator[Any] = self.func(self)
            return flow
        return self._typed_generator(bind(self.spec, self.func, stream=self, send=self._send()))

    async def _typed_generator(self, call: Callable[[Any], Any]) -> AsyncIterator[Any]:
        if self.spec.kind is HandlerKind.BATCH:
            while True:
                batch = await self._next_batch()
                if batch is None:
                    return
                if self._deserializing:
                    batch = await self._deserialization().batch(batch)
                async for value in call(batch):
                    yield value
        async for cr in self:
            async for value in call(cr):
                yield value

    async def _next_batch(self) -> list[RawRecord] | None:
        """The next non-empty batch as consumed; None once the stream stops."""
        get_many = self.get_many or GetMany()
        consumer = self.consumer
        if consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        while True:
            try:
                batch = await consumer.getmany(
                    timeout_ms=get_many.timeout_ms, max_records=get_many.max_records
                )
                if not batch:
                    # Nothing came within timeout_ms: wait for records instead of
                    # asking again at once (timeout_ms=0 would spin).
                    await consumer.wait_for_records(None)
                    continue
            except ConsumerStoppedError:
                if self._stopping:
                    return None
                raise
            return [record for records in batch.values() for record in records]

    async def _consume(self) -> None:
        if self.spec.kind is HandlerKind.STREAM:
            await self.func(self)
            return
        handler = self._bind_handler()
        if self._restarts:
            # After a restart: the back-off starts over once a record is handled.
            restarted = handler

            async def handler(record: Any) -> Any:
                result = await restarted(record)
                self._restarts = 0
                return result

        consumer = self.consumer
        if consumer is None:
            raise StreamError(f"stream {self.name!r} is not started")
        transactions.current.set(self._transaction)
        if self._transaction is not None:
            handler = transactions.exactly_once_handler(cast("Stream", self), consumer, handler)
        if self.spec.kind is HandlerKind.BATCH:
            while (batch := await self._next_batch()) is not None:
                await handler(batch)
            return
        if self.concurrency > 1:
            runner = ConcurrentRunner(
                consumer, handler, concurrency=self.concurrency, ordering=self.ordering
            )
            await runner.run()
            return
        await consumer.run(handler)

    async def _run(self) -> None:
        error: BaseException
        while True:
            try:
                await self._consume()
                return
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    raise
                # The handler raised CancelledError itself: a failure like any other.
                error = exc
            except Exception as exc:
                error = exc
            if self._transaction is not None and self.consumer is not None:
                # Exactly-once: nothing of the failed transaction counts, neither its
                # outputs nor the records it had handled.
                try:
                    await self._transaction.abort()
                except Exception as abort_error:
                    logger.error(
                        "stream %r: aborting its transaction failed: %r", self.name, abort_error
                    )
                self.consumer.rewind_handled()
                if isinstance(error, transactions.CommitRefused) and not self._stopping:
                    logger.warning(
                        "stream %r: its transactions were refused (%r); it rejoins its group "
                        "and handles their records again",
                        self.name,
                        error.__cause__,
                    )
                    if await self._restart():
                        continue
                    return
            if self._stopping:
                if not isinstance(error, ConsumerStoppedError):
                    self.error = error
                    logger.error("stream %r failed while stopping: %r", self.name, error)
                return
            if not await self._on_error(error):
                return

    async def _on_error(self, exc: BaseException) -> bool:
        """Apply the error policy; True to run the handler again.

        Escalation (STOP_ENGINE, STOP_APPLICATION) is set off before anything
        is closed, so it happens whatever closing does.
        """
        policy = self.error_policy
        self.error = exc
        consumer = self.consumer
        if policy is StreamErrorPolicy.RESTART:
            if self._transaction is not None and consumer is not None:
                # Its transaction is already aborted: the records it had handled
                # are read again, and only the failing one is skipped when it comes.
                skipped = consumer.in_hand_records()
                self._skip.update((r.topic, r.partition, r.offset) for r in skipped)
            else:
                skipped = consumer.skip_in_hand() if consumer is not None else []
            for record in skipped:
                logger.error(
                    "stream %r: record %s[%d]@%d skipped after it failed (restart policy): %r",
                    self.name,
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                    exc_info=exc,
                )
            if not skipped:
                logger.error("stream %r failed (restart policy): %r", self.name, exc, exc_info=exc)
            return await self._restart()
        logger.error("stream %r failed (%s policy): %r", self.name, policy.value, exc, exc_info=exc)
        self._stopping = True
        if policy in (StreamErrorPolicy.STOP_ENGINE, StreamErrorPolicy.STOP_APPLICATION):
            engine = self.engine
            if engine is not None:
                engine.stop_in_background(exit_process=policy is StreamErrorPolicy.STOP_APPLICATION)
            elif policy is StreamErrorPolicy.STOP_APPLICATION:
                signal.raise_signal(signal.SIGTERM)
        await self._stop_from_own_task()
        return False

    async def _restart(self) -> bool:
        """Close the consumer and open a new one, after a back-off that doubles per
        restart until a record is handled; False if the stream was stopped meanwhile."""
        while True:
            await self._close_consumer()
            base, cap = RESTART_BACKOFF_S
            delay = min(base * 2**self._restarts, cap)
            self._restarts += 1
            self._handed_since_restart = False
            logger.info("stream %r restarts in %.2fs", self.name, delay)
            if await self.wait_for_stop(delay):
                return False
            try:
                await self._open_consumer()
            except Exception as exc:
                if self._stopping:
                    return False
                logger.error("stream %r could not restart: %r", self.name, exc, exc_info=exc)
                self.error = exc
                continue
            return not self._stopping


class StreamListener:
    """Between the stream's consumer and the user's listener: initial offsets, then the user."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.stream._assigned.clear()
        if self.stream._transaction is not None:
            await self.stream._transaction.on_revoked(revoked)
        listener = self.stream.rebalance_listener
        if listener is not None:
            await listener.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        stream = self.stream
        if stream._transaction is not None:
            # Exactly-once: each partition's producer fences its former owner first.
            await stream._transaction.on_assigned(assigned)
        if stream.initial_offsets and not stream._initial_offsets_applied:
            stream._initial_offsets_applied = True
            consumer = stream.consumer
            for tpo in stream.initial_offsets:
                tp = TopicPartition(tpo.topic, tpo.partition)
                if tp in assigned and consumer is not None:
                    consumer.seek(tp, tpo.offset)
                else:
                    logger.warning(
                        "stream %r: initial offset for %s not applied, partition not assigned",
                        stream.name,
                        tp,
                    )
        if assigned:
            stream._assigned.set()
        listener = stream.rebalance_listener
        if listener is not None:
            await listener.on_partitions_assigned(assigned)


async def _no_engine_send(*args: Any, **kwargs: Any) -> Any:
    raise StreamError("this stream is not part of an engine, it cannot send")
