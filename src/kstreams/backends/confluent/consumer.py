"""The consumer port on librdkafka's Consumer: the event-loop side.

librdkafka calls block, so each consumer is owned by one worker thread that
makes every call to it, close included (:mod:`.consumer_thread`); the methods
here check state, submit jobs and await them, and ``getmany`` builds the
records of the messages the worker hands over (:func:`.messages.to_records`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from confluent_kafka import Consumer, Message

from kstreams.backends.confluent.config import MAX_BATCH_SIZE, ConsumerConfig, consumer_config
from kstreams.backends.confluent.consumer_thread import ConsumerThreadSide, State
from kstreams.backends.confluent.errors import guarded, log
from kstreams.backends.confluent.messages import MessageBatch, to_records
from kstreams.backends.confluent.transactional import ConfluentGroupMetadata
from kstreams.backends.confluent.worker import Worker
from kstreams.exceptions import (
    ConfigError,
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    KafkaError,
    OffsetOutOfRangeError,
)
from kstreams.ports import RebalanceCallbacks, RecordBatch
from kstreams.records import TopicPartition

T = TypeVar("T")

#: ``close()`` can hang in librdkafka (e.g. a broker gone mid-rebalance).
CLOSE_TIMEOUT_S = 10.0


class ConfluentConsumer(ConsumerThreadSide, ConfluentGroupMetadata):
    def __init__(
        self,
        *,
        group_id: str | None = None,
        extra_config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._config: ConsumerConfig = consumer_config(
            group_id=group_id, options=options, extra_config=extra_config or {}
        )
        self._group_id = group_id
        self._topics: tuple[str, ...] = ()
        self._pattern: str | None = None
        self._listener: RebalanceCallbacks | None = None
        self._subscribed = False
        self._state: State = "new"
        self._stopped = asyncio.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        # Read on the loop, written on the worker (whole-value rebinds).
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._paused: frozenset[TopicPartition] = frozenset()
        self._highwater: dict[TopicPartition, int] = {}
        # Worker-only from here on.
        self._client: Consumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._undelivered: list[Message[Any, Any]] = []
        self._partition_cache: dict[tuple[Any, Any], TopicPartition] = {}
        self._pending_error: KafkaError | None = None
        self._in_close = False
        self._missing_topics: frozenset[str] = frozenset()
        self._next_topic_check = 0.0
        self._connected = True
        self._next_probe = 0.0

    # -- lifecycle -----------------------------------------------------------

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        self._check_not_stopped()
        if self._state != "new" or self._subscribed:
            raise IllegalStateError("subscribe() is called once, before start()")
        if isinstance(topics, str):
            topics = (topics,)
        if bool(topics) == (pattern is not None):
            raise ConfigError("subscribe() takes topics or a pattern, not both or neither")
        self._topics = tuple(topics)
        self._pattern = pattern
        self._listener = listener
        self._subscribed = True

    async def start(self) -> None:
        self._check_not_stopped()
        if self._state != "new":
            raise IllegalStateError("the consumer was already started")
        if not self._subscribed:
            raise IllegalStateError("subscribe() before start()")
        self._loop = asyncio.get_running_loop()
        worker = Worker("kstreams-confluent-consumer")
        self._worker = worker
        self._state = "started"
        try:
            await asyncio.wrap_future(worker.submit(guarded(self._open), control=False))
        except BaseException:
            self._state = "stopped"
            self._stopped.set()
            worker.submit(guarded(self._close_client), control=False)
            worker.close()
            raise
        if self._group_id is None and self._listener is not None:
            await self._call_listener("on_partitions_assigned", self._assignment)

    async def stop(self) -> None:
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
        if self._state == "stopped":
            return
        if self._state == "closing":
            await self._stopped.wait()
            return
        self._state = "closing"
        self._stopping.set()
        worker = cast(Worker, self._worker)
        try:
            closed = asyncio.wrap_future(worker.submit(guarded(self._close_client), control=False))
            worker.close()
            done, _ = await asyncio.wait({closed}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                closed.cancel()
                log.error(
                    "confluent consumer close() did not return within %.0f s; leaving it behind",
                    CLOSE_TIMEOUT_S,
                )
            elif closed.exception() is not None:
                log.warning("confluent consumer close() failed: %s", closed.exception())
        finally:
            self._state = "stopped"
            self._stopped.set()

    # -- fetching ------------------------------------------------------------

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> RecordBatch:
        worker = self._running()
        limit = self._config.batch_size if max_records is None else max_records
        if limit <= 0:
            raise ConfigError(f"max_records must be positive, got {max_records!r}")
        fetch = functools.partial(
            self._fetch, max(timeout_ms, 0) / 1000, min(limit, MAX_BATCH_SIZE)
        )
        fetched = worker.submit(guarded(fetch), control=False)
        try:
            messages = await asyncio.wrap_future(fetched)
        except asyncio.CancelledError:
            # The messages were taken from librdkafka already: keep them for
            # the next getmany instead of skipping them. On the worker, which
            # owns the undelivered list (a done-callback would run here, on the
            # loop, when the fetch had finished already): queued behind the
            # fetch, before any later one.
            with contextlib.suppress(ConsumerStoppedError):  # closing: nothing reads them
                keep = functools.partial(self._keep_undelivered, fetched)
                worker.submit(keep, control=False).add_done_callback(_log_failure)
            raise
        return to_records(messages)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._running()
        if self._group_id is None:
            raise IllegalOperationError("commit() needs a group_id")
        if offsets:
            await self._call(functools.partial(self._commit_now, dict(offsets)))

    async def committed(self, partition: TopicPartition) -> int | None:
        self._running()
        if self._group_id is None:
            raise IllegalOperationError("committed() needs a group_id")
        return await self._call(functools.partial(self._committed_now, partition))

    async def position(self, partition: TopicPartition) -> int:
        self._running()
        self._check_assigned((partition,))
        return await self._call(functools.partial(self._position_now, partition))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        worker = self._running()
        self._check_assigned((partition,))
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot seek {partition} to a negative offset {offset}")
        self._fire(worker, functools.partial(self._seek_now, partition, offset))

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._running()
        targets = partitions or tuple(sorted(self._assignment))
        self._check_assigned(targets)
        await self._call(functools.partial(self._seek_to_watermark, targets, 0))

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._running()
        targets = partitions or tuple(sorted(self._assignment))
        self._check_assigned(targets)
        await self._call(functools.partial(self._seek_to_watermark, targets, 1))

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self._running()
        return await self._call(functools.partial(self._watermarks, tuple(partitions), 0))

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._running()
        return await self._call(functools.partial(self._watermarks, tuple(partitions), 1))

    def assignment(self) -> frozenset[TopicPartition]:
        self._check_not_stopped()
        return self._assignment

    def highwater(self, partition: TopicPartition) -> int | None:
        self._check_not_stopped()
        return self._highwater.get(partition)

    def pause(self, *partitions: TopicPartition) -> None:
        worker = self._running()
        self._check_assigned(partitions)
        self._paused = self._paused | frozenset(partitions)
        self._fire(worker, functools.partial(self._pause_now, partitions, True))

    def resume(self, *partitions: TopicPartition) -> None:
        worker = self._running()
        self._check_assigned(partitions)
        self._paused = self._paused - frozenset(partitions)
        self._fire(worker, functools.partial(self._pause_now, partitions, False))

    def connected(self) -> bool:
        self._check_not_stopped()
        return self._connected

    def paused(self) -> frozenset[TopicPartition]:
        self._check_not_stopped()
        return self._paused

    # -- loop-side helpers ---------------------------------------------------

    def _check_not_stopped(self) -> None:
        if self._state in ("closing", "stopped"):
            raise ConsumerStoppedError("the consumer was stopped")

    def _running(self) -> Worker:
        self._check_not_stopped()
        if self._state != "started" or self._worker is None:
            raise IllegalStateError("start() the consumer first")
        return self._worker

    def _check_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        assignment = self._assignment
        for partition in partitions:
            if partition not in assignment:
                raise IllegalStateError(f"{partition} is not assigned to this consumer")

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._running().submit(guarded(fn), control=True))

    def _fire(self, worker: Worker, fn: Callable[[], None]) -> None:
        worker.submit(guarded(fn), control=True).add_done_callback(_log_failure)

    def _keep_undelivered(self, fetched: concurrent.futures.Future[MessageBatch]) -> None:
        if fetched.cancelled() or fetched.exception() is not None:
            return
        messages = [message for batch in fetched.result().values() for message in batch]
        self._undelivered = messages + self._undelivered


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("confluent consumer call failed: %s", future.exception())
