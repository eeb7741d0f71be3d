"""The engine: a registry of streams, a producer, and the order they start and stop in."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from kstreams import transactions
from kstreams.backends import resolve_backend
from kstreams.clients import ProducerSettings
from kstreams.concurrency import Ordering
from kstreams.exceptions import DuplicateStreamError, StreamError
from kstreams.hooks import Hook, Hooks
from kstreams.middleware import Middleware
from kstreams.options import check_producer_options
from kstreams.policies import StreamErrorPolicy
from kstreams.ports import Backend
from kstreams.producer import DEFAULT, Producer
from kstreams.rebalance import RebalanceListener
from kstreams.records import RecordMetadata, TopicPartitionOffset
from kstreams.serializers import Deserializer, Serializer
from kstreams.starting import await_start
from kstreams.streams import Stream
from kstreams.transactions import Guarantee
from kstreams.transactions import check_backend as check_transactions
from kstreams.types import BatchEvent, GetMany, HeadersInput
from kstreams.validation import check_engine_arguments, check_handler, check_stream_arguments

logger = logging.getLogger("kstreams.engine")


class StreamEngine:
    """Starts its producer, then its streams; stops the streams (each finishing its
    record and committing), then flushes and closes the producer."""

    def __init__(
        self,
        *,
        backend: Backend,
        title: str | None = None,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        producer_options: dict[str, Any] | None = None,
        hooks: Hooks | None = None,
        monitor: Any = None,
    ) -> None:
        self.title = title
        self.backend = backend
        self.deserializer = deserializer
        self._producer = Producer(backend, serializer=serializer, options=producer_options or {})
        self._hooks = hooks or Hooks()
        self._streams: dict[str, Stream] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stop_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._started = False
        #: The ``monitor`` given (a ``PrometheusMonitor`` or a subclass), watching this engine.
        self.monitor = monitor
        if monitor is not None:
            monitor.watch(self)

    def __repr__(self) -> str:
        streams = len(self._streams)
        return f"<StreamEngine {self.title!r} backend={self.backend.name} streams={streams}>"

    @property
    def serializer(self) -> Serializer | None:
        return self._producer.serializer

    @property
    def producer(self) -> Producer:
        return self._producer

    @property
    def started(self) -> bool:
        return self._started

    @property
    def ready(self) -> bool:
        """Started, and every stream the engine runs is :attr:`Stream.ready`: the answer
        for a readiness probe (a stream stopped by its error policy makes it False)."""
        return self._started and all(
            stream.ready for stream in self._streams.values() if not stream.is_generator
        )

    def _use_backend(self, backend: Backend) -> None:
        """Build the next consumers and producer on ``backend`` (``TestStreamClient`` swaps
        a service onto the memory backend this way). Only while stopped."""
        if self._started:
            raise StreamError("the backend of a running engine cannot change; stop it first")
        self.backend = backend
        self._producer._backend = backend

    @property
    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    # -- streams ---------------------------------------------------------------

    def stream(
        self,
        topics: str | Sequence[str],
        *,
        group_id: str | None = None,
        name: str | None = None,
        rebalance_listener: RebalanceListener | None = None,
        middlewares: Sequence[Middleware] = (),
        error_policy: StreamErrorPolicy = StreamErrorPolicy.STOP,
        get_many: GetMany | None = None,
        initial_offsets: Sequence[TopicPartitionOffset] | None = None,
        subscribe_by_pattern: bool = False,
        deserializer: Deserializer | None = DEFAULT,
        max_buffered_records: int | None = None,
        concurrency: int = 1,
        ordering: Ordering = "partition",
        processing_guarantee: Guarantee = "at_least_once",
        transactional_id: str | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Stream]:
        """Declare a stream. ``options`` are AIOKafkaConsumer keyword arguments,
        checked now: a misspelled one raises ``UnknownOptionError`` (a ``TypeError``).

        ``max_buffered_records`` bounds how far fetching runs ahead of the
        handler (default: twice ``max_poll_records``, at least 1000).
        ``deserializer`` defaults to the engine's; ``None`` hands the handler
        the raw bytes. ``concurrency`` handlers run at once, in order per
        partition or per key (``ordering``; see :mod:`kstreams.concurrency`).
        ``processing_guarantee="exactly_once"`` puts what the handler sends and
        the offsets it consumed in one transaction (see :mod:`kstreams.transactions`).
        """
        # Check before the function is seen, so the error points at the decorator line.
        check_stream_arguments(
            topics,
            error_policy,
            deserializer,
            middlewares=middlewares,
            get_many=get_many,
            rebalance_listener=rebalance_listener,
            initial_offsets=initial_offsets,
        )
        Stream._check_options(options)
        # What the backend cannot honour is reported now too, not at start
        # (when, with the broker down, a connection error would hide it).
        # getattr: a Backend written before the method existed has no checks.
        check_backend = getattr(self.backend, "check_consumer_options", None)
        if check_backend is not None:
            check_backend(group_id=group_id, options=options)
        if processing_guarantee == "exactly_once":
            check_transactions(self.backend)

        def decorator(func: Callable[..., Any]) -> Stream:
            check_handler(func)
            stream = Stream(
                topics,
                func=func,
                name=name,
                group_id=group_id,
                rebalance_listener=rebalance_listener,
                middlewares=middlewares,
                error_policy=error_policy,
                get_many=get_many,
                initial_offsets=initial_offsets,
                subscribe_by_pattern=subscribe_by_pattern,
                deserializer=deserializer,
                max_buffered_records=max_buffered_records,
                concurrency=concurrency,
                ordering=ordering,
                processing_guarantee=processing_guarantee,
                transactional_id=transactional_id,
                **options,
            )
            self.add_stream(stream)
            return stream

        return decorator

    def add_stream(self, stream: Stream, *, error_policy: StreamErrorPolicy | None = None) -> None:
        """Register ``stream``; on a started engine, start it too (in the background:
        ``await stream.start()`` waits for that start). ``error_policy`` replaces the
        stream's own."""
        if error_policy is not None:
            stream.error_policy = StreamErrorPolicy(error_policy)
        if stream.name in self._streams:
            raise DuplicateStreamError(
                f"a stream named {stream.name!r} is already in this engine; pass name= to tell "
                "them apart"
            )
        stream.engine = self
        if stream.inherits_deserializer:
            stream.deserializer = self.deserializer
        self._streams[stream.name] = stream
        if self._started and not stream.is_generator:
            starting = stream.start_soon()
            if starting is not None:
                self._track(starting)

    def get_stream(self, name: str) -> Stream | None:
        return self._streams.get(name)

    async def remove_stream(self, stream: Stream | str) -> None:
        """Stop the stream (committing what it handled) and forget it."""
        name = stream if isinstance(stream, str) else stream.name
        found = self._streams.pop(name, None)
        if found is None:
            raise StreamError(f"no stream named {name!r} in this engine")
        await found.stop()
        found.engine = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Run the on_startup hooks, start the producer, start every stream (each joining its
        group), then run the after_startup hooks.

        A second caller awaits the start under way. A ``stop()`` landing before
        the start is done cancels it (joining may wait on a group that never
        settles) and stops what it had started; ``start`` then returns.
        """
        if self._started and self._start_task is None:
            return
        if self._stop_task is not None and not self._stop_task.done():
            await asyncio.shield(self._stop_task)
        task = self._start_task
        if task is None:
            task = self._start_task = asyncio.get_running_loop().create_task(
                self._start_now(), name="kstreams-engine-start"
            )
            task.add_done_callback(self._start_done)
        if not await await_start(task):
            logger.info("engine %r stopped while it was starting", self.title)

    def _start_done(self, task: asyncio.Task[None]) -> None:
        if self._start_task is task:
            self._start_task = None

    async def _start_now(self) -> None:
        self._stop_task = None
        await self._hooks.run("on_startup")
        # Started before the producer: a stop from here on knows there is something to stop.
        self._started = True
        await self._producer.start()
        to_start = [s for s in self._streams.values() if not s.is_generator]
        results = await asyncio.gather(*(s.start() for s in to_start), return_exceptions=True)
        # A stream removed meanwhile had its start cancelled: not a failure of the engine.
        failures = [
            r
            for stream, r in zip(to_start, results, strict=True)
            if isinstance(r, BaseException) and self._streams.get(stream.name) is stream
        ]
        if failures:
            await self.stop()
            raise failures[0]
        await self._hooks.run("after_startup")
        logger.info("engine %r started with %d stream(s)", self.title, len(to_start))

    async def stop(self) -> None:
        """Stop every stream (each finishing its record and committing), then flush and
        close the producer, then run the after_stop hooks.

        Single-flight: a second caller awaits the stop under way. Called from
        one of the engine's own streams (its handler), it returns at once and
        the stop completes in the background once the handler returns.
        """
        starting = self._start_task
        if starting is not None and starting is not asyncio.current_task():
            starting.cancel()
            await asyncio.wait({starting})
        task = self._stop_task
        if task is None:
            if not self._started:
                return
            task = self._stop_task = asyncio.get_running_loop().create_task(
                self._stop_now(), name="kstreams-engine-stop"
            )
        current = asyncio.current_task()
        if any(stream._task is current for stream in self._streams.values()):
            # From a handler: no stream hands out another record, then the
            # stop goes on once the handler returns.
            for stream in self._streams.values():
                if stream.running:
                    stream.stop_delivering()
            task.add_done_callback(self._background_done)
            return
        await asyncio.shield(task)

    async def _stop_now(self) -> None:
        self._started = False
        # A failing hook must not leave consumers running: stop everything, then raise.
        errors = await self._hooks.run_all("on_stop")
        streams = list(self._streams.values())  # add/remove_stream may run meanwhile
        results = await asyncio.gather(*(s.stop() for s in streams), return_exceptions=True)
        for stream, result in zip(streams, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("stream %r failed to stop cleanly", stream.name, exc_info=result)
        try:
            await self._producer.stop()
        except Exception as exc:
            errors.append(exc)
        finally:
            errors += await self._hooks.run_all("after_stop")
        logger.info("engine %r stopped", self.title)
        if errors:
            raise errors[0]

    # The names of kstreams' first releases.
    init_streaming = start
    stop_streaming = stop

    def stop_in_background(self, *, exit_process: bool = False) -> None:
        """Stop from inside one of the engine's own streams, which ``stop`` would wait for."""

        async def stop() -> None:
            try:
                await self.stop()
            finally:
                if exit_process:
                    signal.raise_signal(signal.SIGTERM)

        self._in_background(stop(), "kstreams-engine-stop")

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._track(asyncio.get_running_loop().create_task(work, name=name))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- hooks -------------------------------------------------------------------

    def on_startup(self, hook: Hook) -> Hook:
        return self._hooks.add("on_startup", hook)

    def after_startup(self, hook: Hook) -> Hook:
        return self._hooks.add("after_startup", hook)

    def on_stop(self, hook: Hook) -> Hook:
        return self._hooks.add("on_stop", hook)

    def after_stop(self, hook: Hook) -> Hook:
        return self._hooks.add("after_stop", hook)

    # -- producing -------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersInput | None = None,
        serializer: Any = DEFAULT,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> RecordMetadata:
        """Produce one record and wait until the broker has it.

        ``serializer=None`` sends ``value`` as raw bytes even when the engine
        has a serializer. Called from an exactly-once stream's handler, the
        record goes into that stream's transaction.
        """
        # A coroutine function, as kpn/kstreams' is (inspect.iscoroutinefunction, AsyncMock
        # specs): returning the producer's coroutine from a plain method measured no faster.
        transaction = transactions.current.get()
        producer = self._producer if transaction is None else transaction.producer
        if transaction is not None:
            transaction.mark_sent()
        return await producer.send(
            topic,
            value,
            key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=headers,
            serializer=serializer,
            serializer_kwargs=serializer_kwargs,
        )

    async def send_many(
        self,
        topic: str,
        batch_events: Sequence[BatchEvent],
        partition: int | None = None,
        timestamp_ms: int | None = None,
        serializer: Any = DEFAULT,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> list[RecordMetadata]:
        """Produce many records, enqueued together, and wait for all of them."""
        transaction = transactions.current.get()
        producer = self._producer if transaction is None else transaction.producer
        if transaction is not None:
            transaction.mark_sent()
        return await producer.send_many(
            topic,
            batch_events,
            partition=partition,
            timestamp_ms=timestamp_ms,
            serializer=serializer,
            serializer_kwargs=serializer_kwargs,
        )


def create_engine(
    title: str | None = None,
    backend: Backend | str | None = None,
    serializer: Serializer | None = None,
    deserializer: Deserializer | None = None,
    producer_options: dict[str, Any] | None = None,
    on_startup: Iterable[Hook] | None = None,
    after_startup: Iterable[Hook] | None = None,
    on_stop: Iterable[Hook] | None = None,
    after_stop: Iterable[Hook] | None = None,
    monitor: Any = None,
    producer_settings: ProducerSettings | None = None,
) -> StreamEngine:
    """An engine on ``backend``: an instance, a name, or ``$KSTREAMS_BACKEND`` (default aiokafka).

    ``producer_options`` are AIOKafkaProducer keyword arguments; its
    ``key_serializer``/``value_serializer`` are applied by kstreams, never by the
    client (see :mod:`kstreams.producer`); ``producer_settings`` gives some of them as a
    value, ``producer_options`` winning. ``monitor`` (a ``PrometheusMonitor``) watches
    the engine and is kept as ``engine.monitor``.
    """
    options = producer_settings.producer_options() if producer_settings else {}
    options.update(producer_options or {})
    check_producer_options(options)
    resolved = resolve_backend(backend)
    check_engine_arguments(resolved, serializer, deserializer)
    return StreamEngine(
        backend=resolved,
        title=title,
        serializer=serializer,
        deserializer=deserializer,
        producer_options=options,
        hooks=Hooks(
            on_startup=on_startup,
            after_startup=after_startup,
            on_stop=on_stop,
            after_stop=after_stop,
        ),
        monitor=monitor,
    )
