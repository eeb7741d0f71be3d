"""The delivery reports of one ``send_batch``: one future and one loop wake-up for the lot.

Per record, the thread serving the report stores its outcome and counts it;
the last report wakes the loop once, which resolves the batch. The callback
librdkafka calls per record is a ``Reporter`` taken from a pool and given
back when the batch is resolved: no new object per record (a
``functools.partial`` is three for the garbage collector, and in a
``send_many`` of 100,000 records that was half the producer's time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message
from confluent_kafka import KafkaError as RdKafkaError

from kstreams.exceptions import KafkaError
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, RecordMetadata

#: What send_batch resolves to: per record, in order, its metadata or its error.
Outcomes = list[RecordMetadata | KafkaError]

#: The placeholder of a record whose report has not come yet (never seen
#: in a resolved batch: the future resolves once every record reported).
_NOT_REPORTED: Any = None

#: Reporters a pool keeps for the next batches (about 5 MB at most).
POOL_KEPT = 1 << 17


def metadata_of(message: Message[Any, Any], topic: str | None = None) -> RecordMetadata:
    """Where librdkafka stored ``message`` (its topic, when the caller knows it, not read)."""
    timestamp_type, timestamp = message.timestamp()
    offset = message.offset()
    return RecordMetadata(
        message.topic() if topic is None else topic,  # type: ignore[arg-type]
        message.partition(),  # type: ignore[arg-type]
        # acks=0: the broker never says where it stored the record.
        offset if offset is not None and offset >= 0 else -1,
        timestamp,
        LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME,
    )


class ReportFlags:
    """What delivery reports tell the producer, written from librdkafka's threads."""

    __slots__ = ("brokers_down", "room_wanted")

    def __init__(self) -> None:
        #: No broker reachable (librdkafka said so; a delivery says otherwise).
        self.brokers_down = False
        #: A sender waits for room in librdkafka's queue: wake it on the next report.
        self.room_wanted = False


class Reporter:
    """librdkafka's delivery callback of record ``index`` of ``batch``."""

    __slots__ = ("batch", "index")

    def __init__(self) -> None:
        self.batch: DeliveryBatch | None = None
        self.index = 0

    def __call__(self, error: RdKafkaError | None, message: Message[Any, Any]) -> None:
        # The batch's bookkeeping inline: this runs per record.
        batch = self.batch
        if batch is None:  # never: a reporter goes back to its pool once its batch is done
            return
        if error is None:
            batch.outcomes[self.index] = metadata_of(message, batch.topic)
            flags = batch.flags
            if flags.room_wanted or flags.brokers_down:
                batch.on_report(True)
        else:
            batch.outcomes[self.index] = batch.translate(error)
            batch.on_report(False)
        if next(batch.counted) == batch.size:
            batch.done()


class ReporterPool:
    """Reporters reused from batch to batch; taken and given back on the event loop."""

    def __init__(self) -> None:
        self._free: list[Reporter] = []

    def take(self, batch: DeliveryBatch) -> list[Reporter]:
        """One reporter per record of ``batch``, in order."""
        size, free = batch.size, self._free
        if len(free) < size:
            free.extend(Reporter() for _ in range(size - len(free)))
        taken = free[len(free) - size :]
        del free[len(free) - size :]
        for index, reporter in enumerate(taken):
            reporter.batch = batch
            reporter.index = index
        return taken

    def give_back(self, reporters: list[Reporter]) -> None:
        for reporter in reporters:
            reporter.batch = None  # the batch and its outcomes are the caller's now
        room = POOL_KEPT - len(self._free)
        if room > 0:
            self._free.extend(reporters[:room])


class DeliveryBatch:
    """Collects the outcomes of ``size`` records; resolves ``future`` when all came."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        topic: str,
        size: int,
        translate: Callable[[RdKafkaError], KafkaError],
        on_report: Callable[[bool], None],
        flags: ReportFlags,
        pool: ReporterPool,
    ) -> None:
        self._loop = loop
        self.topic = topic
        self.size = size
        self.translate = translate
        #: Called with a report when ``flags`` ask for it, and with every failure.
        self.on_report = on_report
        self.flags = flags
        self.outcomes: Outcomes = [_NOT_REPORTED] * size
        # next() on a C counter is atomic under the GIL: reports may be served
        # by the poller thread and by a flush on another thread at once.
        self.counted = itertools.count(1)
        self._pool = pool
        self.future: asyncio.Future[Outcomes] = loop.create_future()
        self.reporters: list[Reporter] = []
        if size == 0:
            self.future.set_result([])
        else:
            self.reporters = pool.take(self)

    def fail_from(self, index: int, error: KafkaError) -> None:
        """Records ``index`` and after were never enqueued: they fail with ``error``."""
        for position in range(index, self.size):
            self.outcomes[position] = error
            if next(self.counted) == self.size:
                self.done()

    def done(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        reporters, self.reporters = self.reporters, []
        self._pool.give_back(reporters)  # every record reported: librdkafka is done with them
        if not self.future.done():
            self.future.set_result(self.outcomes)
