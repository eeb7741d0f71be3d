"""The producer port on librdkafka's Producer.

``produce()`` only enqueues, so it is called on the event loop; a poller
thread serves delivery reports, which are settled on the loop in bursts.
Blocking calls (open, flush, metadata, close) run on a one-thread executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal, cast

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from kstreams.backends.confluent.batch import (
    DeliveryBatch,
    Outcomes,
    ReporterPool,
    ReportFlags,
    metadata_of,
)
from kstreams.backends.confluent.config import producer_config
from kstreams.backends.confluent.errors import (
    librdkafka_log,
    log,
    log_client_error,
    translate,
    translate_exception,
)
from kstreams.backends.confluent.messages import first_metadata
from kstreams.backends.confluent.transactional import ConfluentTransactions
from kstreams.exceptions import (
    ConfigError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerClosedError,
)
from kstreams.records import Headers, RecordMetadata

_State = Literal["new", "started", "closing", "stopped"]

#: Longest wait for a delivery report to free room in a full producer queue
#: before trying again (a report may come between the try and the wait).
ROOM_WAIT_S = 0.1
#: ``close()`` can hang in librdkafka (e.g. a broker gone).
CLOSE_TIMEOUT_S = 10.0


class ConfluentProducer(ConfluentTransactions):
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
        # Set by librdkafka's threads, read anywhere (whole-value writes).
        self._flags = ReportFlags()
        self._reporters = ReporterPool()
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
                raise translate_exception(exc) from exc

    async def send_batch(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Awaitable[Outcomes]:
        producer = self._running()
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        batch = DeliveryBatch(
            loop,
            topic,
            len(records),
            self._translate_report,
            self._report_seen,
            self._flags,
            self._reporters,
        )
        config = self._config
        key_serializer, value_serializer = config.key_serializer, config.value_serializer
        partitioner = None if partition is not None else config.partitioner
        target = -1 if partition is None else partition
        # Keywords only when needed: each keyword produce() parses costs about
        # as much as librdkafka's enqueue. The first five are positional in
        # every confluent-kafka (topic, value, key, partition, callback).
        extra: dict[str, Any] = {"timestamp": timestamp_ms} if timestamp_ms else {}
        produce = producer.produce
        reporters = batch.reporters
        for index, (value, key, headers) in enumerate(records):
            try:
                if key_serializer is not None:
                    key = key_serializer(key)
                if value_serializer is not None:
                    value = value_serializer(value)
                if partitioner is not None:
                    every, available = await self._partitions(topic)
                    target = partitioner(key, every, available)
                reporter = reporters[index]
                deadline: float | None = None
                while True:
                    try:
                        if headers or extra:
                            produce(
                                topic,
                                value,
                                key,
                                target,
                                reporter,
                                headers=list(headers) or None,
                                **extra,
                            )
                        else:
                            produce(topic, value, key, target, reporter)
                        break
                    except BufferError:
                        if deadline is None:
                            deadline = time.monotonic() + config.request_timeout_s
                        await self._wait_for_room(deadline)
                        produce = self._running().produce
            except KafkaException as exc:
                batch.fail_from(index, translate_exception(exc))
                break
            except KafkaError as exc:
                # Whatever was enqueued before is still delivered and reported.
                batch.fail_from(index, exc)
                break
        return batch.future

    async def _wait_for_room(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaTimeoutError(
                f"no room in the producer queue within {self._config.request_timeout_s:g} s"
            )
        self._room.clear()
        self._flags.room_wanted = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), min(remaining, ROOM_WAIT_S))

    def _report_seen(self, delivered: bool) -> None:
        if delivered:
            self._flags.brokers_down = False
        if self._flags.room_wanted:
            self._flags.room_wanted = False
            loop = cast(asyncio.AbstractEventLoop, self._loop)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._room.set)

    def _translate_report(self, error: RdKafkaError) -> KafkaError:
        if error.code() == RdKafkaError._MSG_TIMED_OUT and self._flags.brokers_down:
            # Timed out because no broker was reachable: aiokafka says
            # NodeNotReady, and so do both backends, as a connection error.
            return KafkaConnectionError(
                f"no broker reachable at {self._config.properties['bootstrap.servers']} "
                f"to deliver the record: {error.str()} [{error.name()}]"
            )
        return translate(error)

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
        first_metadata(producer, "confluent producer", properties, self._config.request_timeout_s)
        if self._config.transactional:
            try:
                producer.init_transactions(self._config.request_timeout_s)
            except KafkaException as exc:
                raise translate_exception(exc) from exc
        return producer

    def _poll(self, producer: Producer) -> None:
        while self._polling.is_set():
            try:
                producer.poll(0.1)
            except KafkaException as exc:
                # A transactional producer's fatal error (fenced) is raised by poll
                # too; every call raises it from now on, the reports still come.
                self._fatal = self._fatal or translate_exception(exc)
                time.sleep(0.1)

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
                raise translate_exception(exc) from exc
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
            if error.code() == RdKafkaError._ALL_BROKERS_DOWN:
                self._flags.brokers_down = True
            log_client_error(error)

    def _on_delivery(
        self,
        delivered: asyncio.Future[RecordMetadata],
        error: RdKafkaError | None,
        message: Message[Any, Any],
    ) -> None:
        outcome: RecordMetadata | KafkaError
        if error is not None:
            outcome = self._translate_report(error)
        else:
            self._flags.brokers_down = False
            outcome = metadata_of(message)
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
