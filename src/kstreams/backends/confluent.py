"""The confluent-kafka (librdkafka) backend.

librdkafka calls block, so each consumer is owned by one worker thread that
makes every call to it, close included; the event loop only submits jobs and
awaits them. Rebalance callbacks fire on that thread inside ``consume()``:
the listener is run back on the event loop and waited for, while the worker
keeps serving the consumer calls the listener makes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from kstreams.backends.confluent_config import (
    MAX_BATCH_SIZE,
    ConsumerConfig,
    consumer_config,
    producer_config,
    subscription_pattern,
)
from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    ConsumerStoppedError,
    IllegalOperationError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    ProducerClosedError,
    ProducerFencedError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from kstreams.ports import RawRecord, RebalanceCallbacks, RecordBatch
from kstreams.records import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    ConsumerRecord,
    Headers,
    RecordMetadata,
    TopicPartition,
)

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger(f"{__name__}.librdkafka")

T = TypeVar("T")

#: How long one ``consume()`` call may block. Calls queued for the consumer
#: (commit, seek...) wait at most this long while a ``getmany`` waits.
FETCH_SLICE_S = 0.1
#: Longest wait for a delivery report to free room in a full producer queue
#: before trying again (a report may come between the try and the wait).
ROOM_WAIT_S = 0.1
#: ``close()`` can hang in librdkafka (e.g. a broker gone mid-rebalance).
CLOSE_TIMEOUT_S = 10.0

_ERRORS: dict[int, type[KafkaError]] = {
    RdKafkaError._TRANSPORT: KafkaConnectionError,
    RdKafkaError._ALL_BROKERS_DOWN: KafkaConnectionError,
    RdKafkaError._RESOLVE: KafkaConnectionError,
    RdKafkaError._TIMED_OUT: KafkaTimeoutError,
    RdKafkaError._MSG_TIMED_OUT: KafkaTimeoutError,
    RdKafkaError.REQUEST_TIMED_OUT: KafkaTimeoutError,
    RdKafkaError.UNKNOWN_TOPIC_OR_PART: UnknownTopicOrPartitionError,
    RdKafkaError._UNKNOWN_TOPIC: UnknownTopicOrPartitionError,
    RdKafkaError._UNKNOWN_PARTITION: UnknownTopicOrPartitionError,
    RdKafkaError.MSG_SIZE_TOO_LARGE: RecordTooLargeError,
    RdKafkaError.REBALANCE_IN_PROGRESS: CommitFailedError,
    RdKafkaError.ILLEGAL_GENERATION: CommitFailedError,
    RdKafkaError.UNKNOWN_MEMBER_ID: CommitFailedError,
    RdKafkaError.FENCED_INSTANCE_ID: CommitFailedError,
    RdKafkaError._ASSIGNMENT_LOST: CommitFailedError,
    RdKafkaError._AUTO_OFFSET_RESET: NoOffsetForPartitionError,
    RdKafkaError.OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    RdKafkaError._FENCED: ProducerFencedError,
    RdKafkaError.PRODUCER_FENCED: ProducerFencedError,
    RdKafkaError.INVALID_PRODUCER_EPOCH: ProducerFencedError,
    RdKafkaError._STATE: IllegalStateError,
}


def translate(error: RdKafkaError) -> KafkaError:
    """The kstreams error for a librdkafka error."""
    return _ERRORS.get(error.code(), KafkaError)(f"{error.str()} [{error.name()}]")


def _error_of(exc: KafkaException) -> RdKafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, RdKafkaError) else None


def _translate_exception(exc: KafkaException) -> KafkaError:
    error = _error_of(exc)
    return translate(error) if error is not None else KafkaError(str(exc))


def _guarded(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with the client's exceptions translated, for a worker job."""

    def guarded() -> T:
        try:
            return fn()
        except KafkaException as exc:
            raise _translate_exception(exc) from exc
        except RuntimeError as exc:
            # confluent-kafka's "Consumer closed"
            if "closed" not in str(exc):
                raise
            raise ConsumerStoppedError(str(exc)) from exc

    return guarded


def _rd(partition: TopicPartition, offset: int = OFFSET_INVALID) -> RdTopicPartition:
    return RdTopicPartition(partition.topic, partition.partition, offset)


def _record(message: Message[Any, Any], topic: str, partition: int) -> RawRecord:
    timestamp_type, timestamp = message.timestamp()
    key, value = message.key(), message.value()
    headers = message.headers()
    # Positional: this runs once per consumed record.
    return ConsumerRecord(
        topic,
        partition,
        cast(int, message.offset()),
        timestamp if timestamp_type != TIMESTAMP_NOT_AVAILABLE else -1,
        LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME,
        key,
        value,
        None,
        len(key) if key is not None else -1,
        len(value) if value is not None else -1,
        # Kafka allows null header values; they are kept as None.
        cast(Headers, tuple(headers)) if headers else (),
    )


_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


def _run_job(job: _Job) -> None:
    fn, future = job
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class _Worker:
    """The one thread that makes every call to a consumer.

    Jobs run in submission order, *control* jobs (everything but fetching and
    closing) ahead of the others. Control jobs are also served while the
    thread waits inside a fetch, between ``consume()`` slices, and while a
    rebalance callback waits for the listener on the event loop: the calls a
    listener makes run then, instead of queueing behind the callback.
    """

    _names = itertools.count(1)

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._control: collections.deque[_Job] = collections.deque()
        self._main: collections.deque[_Job] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"{name}-{next(self._names)}", daemon=True
        )
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def submit(self, fn: Callable[[], T], *, control: bool) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if threading.get_ident() == self._thread.ident:
            _run_job((fn, future))
            return future
        with self._cond:
            if self._closed:
                raise ConsumerStoppedError("the consumer was stopped")
            (self._control if control else self._main).append((fn, future))
            self._cond.notify_all()
        return future

    def close(self) -> None:
        """Take no more jobs; the thread ends once the queued ones ran."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def serve_control(self) -> None:
        while True:
            with self._cond:
                if not self._control:
                    return
                job = self._control.popleft()
            _run_job(job)

    def serve_until(self, waited: concurrent.futures.Future[Any], timeout_s: float) -> bool:
        """Serve control jobs until ``waited`` is done; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        waited.add_done_callback(self._wake)
        while True:
            self.serve_control()
            with self._cond:
                while not self._control and not waited.done():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if waited.done() and not self._control:
                    return True

    def _wake(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._control or self._main or self._closed):
                    self._cond.wait()
                if self._control:
                    job = self._control.popleft()
                elif self._main:
                    job = self._main.popleft()
                else:
                    return
            _run_job(job)


_State = Literal["new", "started", "closing", "stopped"]


class ConfluentConsumer:
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
        self._state: _State = "new"
        self._stopped = asyncio.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: _Worker | None = None
        # Read on the loop, written on the worker (whole-value rebinds).
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._paused: frozenset[TopicPartition] = frozenset()
        self._highwater: dict[TopicPartition, int] = {}
        # Worker-only from here on.
        self._client: Consumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._undelivered: list[RawRecord] = []
        self._partition_cache: dict[tuple[Any, Any], TopicPartition] = {}
        self._pending_error: KafkaError | None = None
        self._in_close = False

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
        worker = _Worker("kstreams-confluent-consumer")
        self._worker = worker
        self._state = "started"
        try:
            await asyncio.wrap_future(worker.submit(_guarded(self._open), control=False))
        except BaseException:
            self._state = "stopped"
            self._stopped.set()
            worker.submit(_guarded(self._close_client), control=False)
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
        worker = cast(_Worker, self._worker)
        try:
            closed = asyncio.wrap_future(worker.submit(_guarded(self._close_client), control=False))
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
        fetched = worker.submit(_guarded(fetch), control=False)
        try:
            return await asyncio.wrap_future(fetched)
        except asyncio.CancelledError:
            # The records were taken from librdkafka already: keep them for
            # the next getmany instead of skipping them.
            fetched.add_done_callback(self._keep_undelivered)
            raise

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

    def paused(self) -> frozenset[TopicPartition]:
        self._check_not_stopped()
        return self._paused

    # -- loop-side helpers ---------------------------------------------------

    def _check_not_stopped(self) -> None:
        if self._state in ("closing", "stopped"):
            raise ConsumerStoppedError("the consumer was stopped")

    def _running(self) -> _Worker:
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
        return await asyncio.wrap_future(self._running().submit(_guarded(fn), control=True))

    def _fire(self, worker: _Worker, fn: Callable[[], None]) -> None:
        worker.submit(_guarded(fn), control=True).add_done_callback(_log_failure)

    async def _call_listener(self, method: str, partitions: frozenset[TopicPartition]) -> None:
        try:
            await getattr(self._listener, method)(partitions)
        except Exception:
            log.exception("rebalance listener %s(%s) failed", method, sorted(partitions))

    def _keep_undelivered(self, fetched: concurrent.futures.Future[RecordBatch]) -> None:
        if fetched.cancelled() or fetched.exception() is not None:
            return
        records = [record for batch in fetched.result().values() for record in batch]
        self._undelivered = records + self._undelivered

    # -- worker-side ---------------------------------------------------------

    def _consumer(self) -> Consumer:
        if self._client is None:
            raise ConsumerStoppedError("the consumer is not open")
        return self._client

    def _open(self) -> None:
        properties = self._config.client_properties(
            pattern=self._pattern is not None, loop=self._loop
        )
        properties.setdefault("logger", librdkafka_log)
        properties.setdefault("error_cb", self._on_error)
        try:
            client = Consumer(properties)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"confluent-kafka rejected the consumer settings: {exc}") from exc
        self._client = client
        try:
            metadata = client.list_topics(timeout=self._config.request_timeout_s)
        except KafkaException as exc:
            raise KafkaConnectionError(
                f"no broker answered within {self._config.request_timeout_s:g} s: {exc}"
            ) from exc
        if self._group_id is not None:
            subscription = (
                [subscription_pattern(self._pattern)]
                if self._pattern is not None
                else list(self._topics)
            )
            client.subscribe(subscription, on_assign=self._on_assign, on_revoke=self._on_revoke)
            return
        # Without a group, every partition of the subscribed topics is
        # assigned, as aiokafka does.
        topics = sorted(metadata.topics)
        if self._pattern is not None:
            matcher = re.compile(self._pattern)
            hidden = ("__consumer_offsets", "__transaction_state")
            topics = [
                topic
                for topic in topics
                if matcher.match(topic)
                and not (self._config.exclude_internal_topics and topic in hidden)
            ]
        else:
            missing = set(self._topics) - set(topics)
            if missing:
                log.warning("topics %s do not exist; nothing assigned from them", sorted(missing))
            topics = [topic for topic in self._topics if topic in metadata.topics]
        assignment = frozenset(
            TopicPartition(topic, partition)
            for topic in topics
            for partition in metadata.topics[topic].partitions
        )
        starts = self._start_offsets(assignment)
        client.assign(
            [
                _rd(partition, starts.get(partition, OFFSET_INVALID))
                for partition in sorted(assignment)
            ]
        )
        self._positions.update(starts)
        self._assignment = assignment

    def _close_client(self) -> None:
        self._in_close = True
        client = self._client
        if client is None:
            return
        try:
            client.close()  # serves the final revoke callback, which needs the client
        finally:
            self._client = None

    def _on_error(self, error: RdKafkaError) -> None:
        if error.fatal():
            self._pending_error = translate(error)
            log.error("confluent consumer fatal error: %s", error)
        else:
            _log_client_error(error)

    def _on_assign(self, _consumer: Consumer, partitions: list[RdTopicPartition]) -> None:
        assigned = frozenset(TopicPartition(p.topic, p.partition) for p in partitions)
        self._positions.clear()
        self._undelivered = []
        starts = self._start_offsets(assigned)
        self._consumer().assign(
            [
                _rd(partition, starts.get(partition, OFFSET_INVALID))
                for partition in sorted(assigned)
            ]
        )
        self._positions.update(starts)
        self._assignment = assigned
        self._paused = frozenset()
        self._run_listener("on_partitions_assigned", assigned)

    def _on_revoke(self, _consumer: Consumer, _partitions: list[RdTopicPartition]) -> None:
        # aiokafka does not call the listener when the consumer stops.
        if not self._in_close:
            self._run_listener("on_partitions_revoked", self._assignment)
        self._consumer().unassign()
        self._assignment = frozenset()
        self._paused = frozenset()
        self._positions.clear()
        self._highwater.clear()
        self._undelivered = []

    def _run_listener(self, method: str, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None or self._loop is None or self._worker is None:
            return
        coroutine = self._call_listener(method, partitions)
        try:
            done = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:
            coroutine.close()
            log.warning("event loop closed: rebalance listener %s not called", method)
            return
        # Bounded well under max.poll.interval.ms, past which the broker
        # would evict this member anyway.
        timeout_s = self._config.max_poll_interval_s / 2
        if not self._worker.serve_until(done, timeout_s):
            done.cancel()
            log.error(
                "rebalance listener %s did not return within %.1f s; the rebalance goes on",
                method,
                timeout_s,
            )

    def _fetch(self, timeout_s: float, limit: int) -> RecordBatch:
        client = self._consumer()
        worker = cast(_Worker, self._worker)
        deadline = time.monotonic() + timeout_s
        records = self._take_undelivered(limit)
        while not records:
            worker.serve_control()
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self._stopping.is_set():
                break
            # consume() waits for a full batch or the timeout: take what is
            # there, else wait for one record, then whatever came with it.
            messages = client.consume(num_messages=limit, timeout=0)
            if not messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                messages = client.consume(num_messages=1, timeout=min(remaining, FETCH_SLICE_S))
                if messages and limit > 1:
                    messages += client.consume(num_messages=limit - 1, timeout=0)
            records = self._accept(messages)
            if not records and time.monotonic() >= deadline:
                break
        return records

    def _take_undelivered(self, limit: int) -> RecordBatch:
        if not self._undelivered:
            return {}
        records, self._undelivered = self._undelivered[:limit], self._undelivered[limit:]
        batch: RecordBatch = {}
        for record in records:
            batch.setdefault(record.topic_partition, []).append(record)
        return self._admit(batch)

    def _accept(self, messages: list[Message[Any, Any]]) -> RecordBatch:
        batch: RecordBatch = {}
        error: KafkaError | None = None
        # Per message, only C getters and the record itself: TopicPartitions come
        # from a cache, grouping is per partition.
        partitions = self._partition_cache
        for message in messages:
            problem = message.error()
            if problem is not None:
                if error is None:
                    error = self._message_error(problem)
                continue
            topic, number = message.topic(), message.partition()
            key = (topic, number)
            partition = partitions.get(key)
            if partition is None:
                partition = partitions[key] = TopicPartition(cast(str, topic), cast(int, number))
            records = batch.get(partition)
            if records is None:
                records = batch[partition] = []
            records.append(_record(message, partition.topic, partition.partition))
        batch = self._admit(batch)
        client = self._consumer()
        for partition, records in batch.items():
            self._positions[partition] = records[-1].offset + 1
            watermarks: tuple[int, int] | None = client.get_watermark_offsets(
                _rd(partition), cached=True
            )
            if watermarks is not None and watermarks[1] >= 0:
                self._highwater[partition] = watermarks[1]
        if error is not None:
            if not batch:
                raise error
            self._pending_error = error
        return batch

    def _admit(self, batch: RecordBatch) -> RecordBatch:
        """Drop records of partitions no longer assigned, or paused since they were fetched."""
        assignment, paused = self._assignment, self._paused
        for partition in list(batch):
            if partition not in assignment:
                del batch[partition]
            elif partition in paused:
                self._seek_now(partition, batch.pop(partition)[0].offset)
        return batch

    def _message_error(self, error: RdKafkaError) -> KafkaError | None:
        code = error.code()
        if code == RdKafkaError._PARTITION_EOF:
            return None
        if code in (RdKafkaError.UNKNOWN_TOPIC_OR_PART, RdKafkaError._UNKNOWN_TOPIC):
            # aiokafka waits for a subscribed topic to appear.
            log.warning("subscribed topic not available: %s", error.str())
            return None
        if code == RdKafkaError._AUTO_OFFSET_RESET or error.fatal():
            return translate(error)
        log.warning("confluent consumer error: %s", error)
        return None

    def _commit_now(self, offsets: dict[TopicPartition, int]) -> None:
        result = self._consumer().commit(
            offsets=[_rd(partition, offset) for partition, offset in offsets.items()],
            asynchronous=False,
        )
        for partition in result or ():
            if partition.error is not None:
                raise translate(partition.error)

    def _committed_now(self, partition: TopicPartition) -> int | None:
        (result,) = self._consumer().committed(
            [_rd(partition)], timeout=self._config.request_timeout_s
        )
        if result.error is not None:
            raise translate(result.error)
        return result.offset if result.offset >= 0 else None

    def _start_offsets(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        # Every partition starts at an offset resolved here, never at one
        # librdkafka looks up itself: a seek made while its auto.offset.reset
        # ListOffsets is in flight is undone when the (outdated) reply comes
        # back, as librdkafka then re-arms the lookup, which half a second
        # later moves the partition to the log's end (or start) of that moment:
        # a pinned position() is lost and the records in between are skipped.
        starts: dict[TopicPartition, int] = {}
        if not partitions:
            return starts
        ordered = sorted(partitions)
        try:
            if self._group_id is not None:
                committed = self._consumer().committed(
                    [_rd(partition) for partition in ordered],
                    timeout=self._config.request_timeout_s,
                )
                for result in committed:
                    if result.error is None and result.offset >= 0:
                        starts[TopicPartition(result.topic, result.partition)] = result.offset
            reset = self._config.auto_offset_reset
            if reset != "none":
                missing = [partition for partition in ordered if partition not in starts]
                starts.update(self._watermarks(missing, 0 if reset == "earliest" else 1))
        except (KafkaException, KafkaError) as exc:
            # librdkafka resolves the partitions left out itself.
            log.warning("start offsets of %s not resolved: %s", ordered, exc)
        return starts

    def _position_now(self, partition: TopicPartition) -> int:
        if partition not in self._assignment:
            raise IllegalStateError(f"{partition} is not assigned to this consumer")
        if partition in self._positions:
            return self._positions[partition]
        client = self._consumer()
        (known,) = client.position([_rd(partition)])
        if known.offset >= 0:
            return known.offset
        # Nothing fetched yet: resolve the start as the fetcher would, and pin
        # it there, as aiokafka does, so that a record produced after this
        # answer is not skipped by a later "latest" reset.
        resolved = self._committed_now(partition) if self._group_id is not None else None
        if resolved is None:
            reset = self._config.auto_offset_reset
            if reset == "none":
                raise NoOffsetForPartitionError(f"{partition} has no committed offset")
            resolved = self._watermarks((partition,), 0 if reset == "earliest" else 1)[partition]
        self._seek_now(partition, resolved)
        return resolved

    def _seek_now(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self._assignment:
            raise IllegalStateError(f"{partition} is not assigned to this consumer")
        self._positions[partition] = offset
        self._undelivered = [r for r in self._undelivered if r.topic_partition != partition]
        try:
            self._consumer().seek(_rd(partition, offset))
        except KafkaException as exc:
            error = _error_of(exc)
            if error is None or error.code() != RdKafkaError._STATE:
                raise _translate_exception(exc) from exc
            # librdkafka refuses to seek a partition it has not started
            # fetching yet (just assigned): assign again, from the offset.
            self._reassign()

    def _reassign(self) -> None:
        client = self._consumer()
        client.assign(
            [
                _rd(partition, self._positions.get(partition, OFFSET_INVALID))
                for partition in sorted(self._assignment)
            ]
        )
        paused = self._paused & self._assignment
        if paused:
            client.pause([_rd(partition) for partition in sorted(paused)])

    def _seek_to_watermark(self, partitions: Sequence[TopicPartition], which: int) -> None:
        for partition, offset in self._watermarks(partitions, which).items():
            self._seek_now(partition, offset)

    def _watermarks(
        self, partitions: Sequence[TopicPartition], which: int
    ) -> dict[TopicPartition, int]:
        client = self._consumer()
        offsets: dict[TopicPartition, int] = {}
        for partition in partitions:
            watermarks: tuple[int, int] | None = client.get_watermark_offsets(
                _rd(partition), timeout=self._config.request_timeout_s, cached=False
            )
            if watermarks is None:
                raise KafkaTimeoutError(f"no watermarks for {partition} in time")
            offsets[partition] = watermarks[which]
        return offsets

    def _pause_now(self, partitions: Sequence[TopicPartition], pause: bool) -> None:
        targets = [_rd(partition) for partition in partitions if partition in self._assignment]
        if not targets:
            return
        client = self._consumer()
        if pause:
            client.pause(targets)
        else:
            client.resume(targets)


def _log_client_error(error: RdKafkaError) -> None:
    # librdkafka retries these itself; its log (librdkafka_log) has the detail.
    level = logging.WARNING if error.code() == RdKafkaError._ALL_BROKERS_DOWN else logging.DEBUG
    log.log(level, "confluent client error: %s", error)


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("confluent consumer call failed: %s", future.exception())


class ConfluentProducer:
    def __init__(self, *, extra_config: Mapping[str, Any] | None = None, **options: Any) -> None:
        self._config = producer_config(options=options, extra_config=extra_config or {})
        self._state: _State = "new"
        self._stopped = asyncio.Event()
        self._room = asyncio.Event()
        self._settle_lock = threading.Lock()
        self._to_settle: list[
            tuple[asyncio.Future[RecordMetadata], RecordMetadata | KafkaError]
        ] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Producer | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._poller: threading.Thread | None = None
        self._polling = threading.Event()
        self._fatal: KafkaError | None = None
        self._metadata: dict[str, tuple[float, list[int], list[int]]] = {}

    async def start(self) -> None:
        if self._state in ("closing", "stopped"):
            raise ProducerClosedError("the producer was stopped")
        if self._state != "new":
            raise IllegalStateError("the producer was already started")
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kstreams-confluent-producer"
        )
        self._state = "started"
        try:
            self._producer = await self._loop.run_in_executor(self._executor, self._open)
        except BaseException:
            self._state = "stopped"
            self._stopped.set()
            self._executor.shutdown(wait=False)
            raise
        self._polling.set()
        self._poller = threading.Thread(
            target=self._poll, args=(self._producer,), name="kstreams-confluent-poller", daemon=True
        )
        self._poller.start()

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
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        executor = cast(concurrent.futures.ThreadPoolExecutor, self._executor)
        try:
            closed = loop.run_in_executor(executor, self._close)
            done, _ = await asyncio.wait(
                {closed}, timeout=CLOSE_TIMEOUT_S + self._config.request_timeout_s
            )
            if not done:
                closed.cancel()
                log.error("confluent producer did not close in time; leaving it behind")
            elif closed.exception() is not None:
                log.warning("confluent producer close failed: %s", closed.exception())
        finally:
            executor.shutdown(wait=False)
            self._state = "stopped"
            self._stopped.set()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> Awaitable[RecordMetadata]:
        producer = self._running()
        if self._config.key_serializer is not None:
            key = self._config.key_serializer(key)
        if self._config.value_serializer is not None:
            value = self._config.value_serializer(value)
        if partition is None and self._config.partitioner is not None:
            every, available = await self._partitions(topic)
            partition = self._config.partitioner(key, every, available)
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        delivered: asyncio.Future[RecordMetadata] = loop.create_future()
        on_delivery = functools.partial(self._on_delivery, delivered)
        deadline = time.monotonic() + self._config.request_timeout_s
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=-1 if partition is None else partition,
                    timestamp=timestamp_ms or 0,
                    headers=list(headers) or None,
                    on_delivery=on_delivery,
                )
                return delivered
            except BufferError:
                # librdkafka's local queue is full: wait for deliveries to
                # make room, as aiokafka's send() waits for batch space.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(
                        f"no room in the producer queue within {self._config.request_timeout_s:g} s"
                    ) from None
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), min(remaining, ROOM_WAIT_S))
                producer = self._running()
            except KafkaException as exc:
                raise _translate_exception(exc) from exc

    async def flush(self) -> None:
        self._running()
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        await loop.run_in_executor(self._executor, self._flush)

    async def partitions_for(self, topic: str) -> frozenset[int]:
        self._running()
        every, _available = await self._partitions(topic)
        return frozenset(every)

    def _running(self) -> Producer:
        if self._state in ("closing", "stopped"):
            raise ProducerClosedError("the producer was stopped")
        if self._state != "started" or self._producer is None:
            raise IllegalStateError("start() the producer first")
        if self._fatal is not None:
            raise self._fatal
        return self._producer

    async def _partitions(self, topic: str) -> tuple[list[int], list[int]]:
        cached = self._metadata.get(topic)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        every, available = await loop.run_in_executor(
            self._executor, functools.partial(self._fetch_partitions, topic)
        )
        self._metadata[topic] = (
            time.monotonic() + self._config.metadata_max_age_s,
            every,
            available,
        )
        return every, available

    # -- producer threads ----------------------------------------------------

    def _open(self) -> Producer:
        properties = self._config.client_properties(loop=self._loop)
        properties.setdefault("logger", librdkafka_log)
        properties.setdefault("error_cb", self._on_error)
        try:
            producer = Producer(properties)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"confluent-kafka rejected the producer settings: {exc}") from exc
        try:
            producer.list_topics(timeout=self._config.request_timeout_s)
        except KafkaException as exc:
            raise KafkaConnectionError(
                f"no broker answered within {self._config.request_timeout_s:g} s: {exc}"
            ) from exc
        if self._config.transactional:
            try:
                producer.init_transactions(self._config.request_timeout_s)
            except KafkaException as exc:
                raise _translate_exception(exc) from exc
        return producer

    def _poll(self, producer: Producer) -> None:
        while self._polling.is_set():
            producer.poll(0.1)

    def _flush(self) -> None:
        producer = self._producer
        if producer is not None:
            producer.flush()

    def _close(self) -> None:
        self._flush()
        self._polling.clear()
        if self._poller is not None:
            self._poller.join()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()

    def _fetch_partitions(self, topic: str) -> tuple[list[int], list[int]]:
        producer = cast(Producer, self._producer)
        deadline = time.monotonic() + self._config.request_timeout_s
        while True:
            try:
                metadata = producer.list_topics(topic, timeout=self._config.request_timeout_s)
            except KafkaException as exc:
                raise _translate_exception(exc) from exc
            described = metadata.topics.get(topic)
            if described is not None and described.error is None and described.partitions:
                every = sorted(described.partitions)
                available = [
                    number
                    for number, info in described.partitions.items()
                    if info.leader >= 0 and info.error is None
                ]
                return every, available
            if time.monotonic() >= deadline:
                if described is not None and described.error is not None:
                    raise translate(described.error)
                raise KafkaTimeoutError(f"no metadata for topic {topic!r}")
            # A topic being auto-created has no leader for a moment.
            time.sleep(0.05)

    def _on_error(self, error: RdKafkaError) -> None:
        if error.fatal():
            self._fatal = translate(error)
            log.error("confluent producer fatal error: %s", error)
        else:
            _log_client_error(error)

    def _on_delivery(
        self,
        delivered: asyncio.Future[RecordMetadata],
        error: RdKafkaError | None,
        message: Message[Any, Any],
    ) -> None:
        outcome: RecordMetadata | KafkaError
        if error is not None:
            outcome = translate(error)
        else:
            timestamp_type, timestamp = message.timestamp()
            offset = message.offset()
            outcome = RecordMetadata(
                topic=cast(str, message.topic()),
                partition=cast(int, message.partition()),
                # acks=0: the broker never says where it stored the record.
                offset=offset if offset is not None and offset >= 0 else -1,
                timestamp=timestamp,
                timestamp_type=(
                    LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME
                ),
            )
        # One loop wake-up per burst of reports, not per record: each
        # call_soon_threadsafe writes to the loop's self-pipe.
        with self._settle_lock:
            wake = not self._to_settle
            self._to_settle.append((delivered, outcome))
        if wake:
            loop = cast(asyncio.AbstractEventLoop, self._loop)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        with self._settle_lock:
            settled, self._to_settle = self._to_settle, []
        self._room.set()
        for delivered, outcome in settled:
            if delivered.done():
                continue
            if isinstance(outcome, KafkaError):
                delivered.set_exception(outcome)
            else:
                delivered.set_result(outcome)


__all__ = ["ConfluentConsumer", "ConfluentProducer", "translate"]
