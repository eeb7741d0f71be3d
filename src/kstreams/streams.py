"""A stream: topics, a group, a handler, and the consumer that feeds it."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from kstreams import fetcher
from kstreams.concurrency import ORDERINGS, Ordering
from kstreams.consumer import StreamConsumer
from kstreams.exceptions import (
    IllegalStateError,
    StreamError,
)
from kstreams.injection import HandlerKind, HandlerSpec, inspect_handler
from kstreams.iteration import RecordIteration
from kstreams.middleware import Middleware
from kstreams.options import check_consumer_options
from kstreams.policies import StreamErrorPolicy
from kstreams.producer import DEFAULT
from kstreams.rebalance import RebalanceListener
from kstreams.records import TopicPartition, TopicPartitionOffset
from kstreams.running import HandlerRunning, StreamListener
from kstreams.serializers import Deserializer
from kstreams.starting import await_start
from kstreams.transactions import (
    Guarantee,
    StreamTransaction,
    check_guarantee,
    open_transaction,
)
from kstreams.types import GetMany
from kstreams.validation import check_enum, check_topics

if TYPE_CHECKING:
    from kstreams.engine import StreamEngine
    from kstreams.ports import Backend

logger = logging.getLogger("kstreams.streams")

#: How long a stop waits for a cancelled handler before closing its consumer anyway.
_CANCEL_GRACE_S = 5.0


class Stream(RecordIteration, HandlerRunning):
    """Consumes ``topics`` as ``group_id`` and hands the records to ``func``.

    Iterate it (``async for cr in stream``), or let the engine call a typed
    handler. A record counts as handled when the next one is asked for (or
    the handler returned); only handled offsets are committed.
    """

    def __init__(
        self,
        topics: str | Sequence[str],
        *,
        func: Callable[..., Any],
        name: str | None = None,
        group_id: str | None = None,
        backend: Backend | None = None,
        rebalance_listener: RebalanceListener | None = None,
        middlewares: Sequence[Middleware] = (),
        error_policy: StreamErrorPolicy = StreamErrorPolicy.STOP,
        get_many: GetMany | None = None,
        initial_offsets: Sequence[TopicPartitionOffset] | None = None,
        subscribe_by_pattern: bool = False,
        deserializer: Deserializer | None = DEFAULT,
        max_buffered_records: int | None = None,
        graceful_timeout_s: float = 30.0,
        concurrency: int = 1,
        ordering: Ordering = "partition",
        config: dict[str, Any] | None = None,
        processing_guarantee: Guarantee = "at_least_once",
        transactional_id: str | None = None,
        **options: Any,
    ) -> None:
        if config:
            # kpn's spelling: consumer settings as one dict; keyword arguments win.
            options = {**config, **options}
        self._check_options(options)
        if group_id is None:
            group_id = options.pop("group_id", None)
        else:
            options.pop("group_id", None)
        self.topics: list[str] = check_topics(topics)
        self.subscribe_by_pattern = subscribe_by_pattern
        if subscribe_by_pattern:
            if len(self.topics) != 1:
                raise StreamError("subscribe_by_pattern takes one regex, not a list of topics")
            try:
                re.compile(self.topics[0])
            except re.error as exc:
                raise StreamError(f"invalid topic pattern {self.topics[0]!r}: {exc}") from exc
        self.func = func
        self.spec: HandlerSpec = inspect_handler(func)
        self.name = name or getattr(func, "__name__", None) or f"stream-{id(self):x}"
        self.group_id: str | None = group_id
        self.backend = backend
        self.rebalance_listener = rebalance_listener
        self.middlewares = list(middlewares)
        if self.middlewares and self.spec.kind is HandlerKind.STREAM:
            raise StreamError(
                f"stream {self.name!r}: middlewares wrap typed handlers "
                "(async def f(cr: ConsumerRecord)); an 'async for' stream has none to wrap"
            )
        if self.middlewares and self.spec.is_generator:
            raise StreamError(
                f"stream {self.name!r}: middlewares wrap handlers that return; "
                "a generator handler yields and has none to wrap"
            )
        self.error_policy = check_enum("error_policy", error_policy, StreamErrorPolicy)
        self.concurrency, self.ordering = self._check_concurrency(concurrency, ordering)
        # get_many with a handler taking one ConsumerRecord: called once per record (kpn).
        if self.spec.kind is HandlerKind.BATCH and get_many is None:
            get_many = GetMany()
        self.get_many = get_many
        self.initial_offsets = list(initial_offsets or ())
        #: True until an engine gives the stream its deserializer (``deserializer``
        #: omitted); ``None`` means raw bytes.
        self.inherits_deserializer = deserializer is DEFAULT
        self.deserializer: Deserializer | None = None if deserializer is DEFAULT else deserializer
        self.max_buffered_records = max_buffered_records
        self.graceful_timeout_s = graceful_timeout_s

        self.transactional_id = transactional_id
        self.processing_guarantee = check_guarantee(self, processing_guarantee, options)
        self._transaction: StreamTransaction | None = None
        #: (topic, partition, offset) of records an exactly-once RESTART skips when
        #: they come back (the aborted transaction's others are handled again).
        self._skip: set[tuple[str, int, int]] = set()
        self.auto_commit: bool = bool(options.pop("enable_auto_commit", True))
        self.auto_commit_interval_ms: int = options.pop("auto_commit_interval_ms", 5000)
        self._key_deserializer: Callable[[Any], Any] | None = options.pop("key_deserializer", None)
        self._value_deserializer: Callable[[Any], Any] | None = options.pop(
            "value_deserializer", None
        )
        self.options: dict[str, Any] = options

        self.engine: StreamEngine | None = None
        self.consumer: StreamConsumer | None = None
        self.running = False
        self.error: BaseException | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._handed_since_restart = False
        self._start_task: asyncio.Task[None] | None = None
        self._stop_event = asyncio.Event()
        self._initial_offsets_applied = False
        self._flow: AsyncIterator[Any] | None = None
        self._restarts = 0

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        check_consumer_options(options)

    def _check_concurrency(self, concurrency: Any, ordering: Any) -> tuple[int, Ordering]:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise StreamError(
                f"stream {self.name!r}: concurrency must be an int >= 1, got {concurrency!r}"
            )
        if ordering not in ORDERINGS:
            raise StreamError(
                f"stream {self.name!r}: ordering must be one of {ORDERINGS}, got {ordering!r}"
            )
        if concurrency > 1 and (self.spec.kind is not HandlerKind.RECORD or self.spec.is_generator):
            raise StreamError(
                f"stream {self.name!r}: concurrency={concurrency} needs a handler taking one "
                "ConsumerRecord (async def f(cr: ConsumerRecord)); an 'async for' stream, a "
                "generator or a batch handler runs one record (or batch) at a time"
            )
        ordered: Ordering = ordering
        return concurrency, ordered

    def __repr__(self) -> str:
        return f"<Stream {self.name!r} topics={self.topics} group_id={self.group_id!r}>"

    # -- configuration the consumer is built with -----------------------------

    def _drain_timeout_s(self) -> float:
        timeout_ms = self.options.get("rebalance_timeout_ms") or self.options.get(
            "session_timeout_ms", 10000
        )
        return float(timeout_ms) / 2000

    def _resolve_backend(self) -> Backend:
        if self.backend is not None:
            return self.backend
        if self.engine is not None:
            return self.engine.backend
        from kstreams.backends import resolve_backend

        return resolve_backend()

    async def _open_consumer(self) -> StreamConsumer:
        backend = self._resolve_backend()
        port = backend.create_consumer(group_id=self.group_id, options=self.options)
        consumer = StreamConsumer(
            port,
            group_id=self.group_id,
            auto_commit=self.auto_commit,
            auto_commit_interval_ms=self.auto_commit_interval_ms,
            max_poll_records=self.options.get("max_poll_records"),
            max_buffered_records=self.max_buffered_records,
            revoke_drain_timeout_s=self._drain_timeout_s(),
            # Well inside the poll interval: the fetch loop is what keeps polling.
            pause_after_s=min(0.5, self.options.get("max_poll_interval_ms", 300_000) / 4000),
            listener=StreamListener(self),
            commit_timeout_s=fetcher.COMMIT_TIMEOUT_S,
            close_timeout_s=fetcher.CLOSE_TIMEOUT_S,
            outage_warning_s=fetcher.OUTAGE_WARNING_S,
        )
        if self.subscribe_by_pattern:
            port.subscribe(pattern=self.topics[0], listener=consumer)
        else:
            port.subscribe(self.topics, listener=consumer)
        self.consumer = consumer
        try:
            if self.processing_guarantee == "exactly_once":
                self._transaction = await open_transaction(self, backend, consumer, port)
            await port.start()
        except BaseException:
            # A failed or cancelled start leaves nothing open behind it.
            transaction, self._transaction = self._transaction, None
            self.consumer = None
            with anyio.move_on_after(fetcher.CLOSE_TIMEOUT_S, shield=True):
                if transaction is not None:
                    await transaction.stop()
                await port.stop()
            raise
        consumer.start_fetching()
        return consumer

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join the group; run the handler unless it is a generator.

        Idempotent: a call while a start is under way waits for that one. A
        caller cancelled while it waits cancels the start, and a ``stop()``
        landing before the start is done cancels it too: joining a group that
        never settles must not keep a stop waiting. Then ``start`` raises
        :class:`~kstreams.exceptions.StreamError`.
        """
        if self.running:
            return
        task = self._start_task or self.start_soon()
        assert task is not None
        if not await await_start(task):
            raise StreamError(f"stream {self.name!r} was stopped while it was starting")
        if not self.running:
            raise StreamError(f"stream {self.name!r} failed to start")

    def start_soon(self) -> asyncio.Task[None] | None:
        """Start in a task, at once reserved: a ``start()`` or ``stop()`` called from now
        on waits for (or cancels) it. None if the stream is running or starting already."""
        if self.running or self._start_task is not None:
            return None
        task = asyncio.get_running_loop().create_task(
            self._start(), name=f"kstreams-start-{self.name}"
        )
        self._start_task = task
        # A callback, not a finally: a start cancelled before it ran has none.
        task.add_done_callback(self._start_done)
        return task

    def _start_done(self, task: asyncio.Task[None]) -> None:
        if self._start_task is task:
            self._start_task = None

    async def _start(self) -> None:
        self._stop_task = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._assigned = asyncio.Event()
        self.error = None
        self._restarts = 0
        if self.rebalance_listener is not None:
            self.rebalance_listener.stream = self
            self.rebalance_listener.engine = self.engine
        await self._open_consumer()
        self.running = True
        if not self.spec.is_generator:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"kstreams-stream-{self.name}"
            )
        logger.info("stream %r consuming %s as group %r", self.name, self.topics, self.group_id)

    async def stop(self) -> None:
        """Let the record in hand finish, commit what was handled, then close the consumer.

        Single-flight and bounded: every caller awaits the same stop, which
        returns within ``graceful_timeout_s`` plus the consumer's commit and
        close budget (see :mod:`kstreams.fetcher`). Called from the stream's own
        task (its handler), it returns at once and the stop completes in the
        background once the handler returns.
        """
        starting = self._start_task
        if starting is not None and not self._in_own_task():
            # Joining may wait on a group that never settles: a stop does not.
            starting.cancel()
            await asyncio.wait({starting})
        task = self._stop_task
        if task is None:
            if not self.running:
                return
            self.stop_delivering()
            task = self._stop_task = asyncio.get_running_loop().create_task(
                self._stop_now(), name=f"kstreams-stop-{self.name}"
            )
        if self._in_own_task():
            return
        await asyncio.shield(task)

    def stop_delivering(self) -> None:
        """Hand out no more records from now on (the record in hand may finish)."""
        self._stopping = True
        self._stop_event.set()
        if self.consumer is not None:
            self.consumer.stop_delivering()

    def _in_own_task(self) -> bool:
        task = self._task
        return task is not None and task is asyncio.current_task()

    async def _stop_now(self, *, from_own_task: bool = False) -> None:
        try:
            self.stop_delivering()
            task = self._task
            if task is not None and not task.done() and not from_own_task:
                done, _ = await asyncio.wait({task}, timeout=self.graceful_timeout_s)
                if not done:
                    logger.warning(
                        "stream %r did not finish its record within %.1fs; cancelling it, "
                        "the record will be redelivered",
                        self.name,
                        self.graceful_timeout_s,
                    )
                    task.cancel()
                    done, _ = await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
                    if not done:
                        logger.error(
                            "stream %r ignores its cancellation; closing its consumer anyway",
                            self.name,
                        )
            await self._close_consumer()
            transaction, self._transaction = self._transaction, None
            if transaction is not None:
                await transaction.stop()
        except Exception:
            logger.exception("stream %r: stopping failed", self.name)
        finally:
            self._task = None
            self.running = False
            logger.info("stream %r stopped", self.name)

    async def _stop_from_own_task(self) -> None:
        """The stream gave up (an error policy): close now, as the one stop every other
        ``stop()`` caller awaits."""
        if self._stop_task is not None:
            # A stop is under way already: it waits for this task, then closes.
            return
        task = self._stop_task = asyncio.get_running_loop().create_task(
            self._stop_now(from_own_task=True), name=f"kstreams-stop-{self.name}"
        )
        await asyncio.shield(task)

    async def _close_consumer(self) -> None:
        consumer = self.consumer
        if consumer is not None and not consumer.closed:
            await consumer.close()

    @property
    def ready(self) -> bool:
        """Running, and its consumer reaches the cluster: what a readiness probe asks.

        False once the stream stopped (an error policy included) and while no
        broker has been reachable for ``kstreams.fetcher.OUTAGE_WARNING_S``.
        """
        consumer = self.consumer
        return self.running and consumer is not None and consumer.reachable

    @property
    def is_generator(self) -> bool:
        return self.spec.is_generator

    async def wait_for_stop(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; return True as soon as the stream is asked to stop.

        For back-offs inside a handler or a middleware, so that ``stop()``
        does not wait for them to run out.
        """
        if self._stopping:
            return True
        try:
            await asyncio.wait_for(self._stop_event.wait(), timeout_s)
        except TimeoutError:
            return self._stopping
        return True

    async def wait_until_assigned(self) -> frozenset[TopicPartition]:
        """Wait until the group gave this stream partitions and their positions are known.

        ``start()`` returns once the consumer has joined the cluster; the group
        assigns partitions a moment later. A record produced before that, to a
        stream with ``auto_offset_reset="latest"``, is not this stream's to read.
        """
        if not self.running:
            raise StreamError(f"stream {self.name!r} is not started")
        while True:
            await self._assigned.wait()
            consumer = self.consumer
            assert consumer is not None  # running streams have one
            assignment = consumer.assignment()
            try:
                for tp in assignment:
                    await consumer.position(tp)
            except IllegalStateError:
                # Revoked while asking; the revoke callback is on its way to
                # clear the event: let it run, then wait for the next assignment.
                await asyncio.sleep(0)
                continue
            return assignment
