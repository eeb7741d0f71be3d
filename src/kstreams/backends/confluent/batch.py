"""The delivery reports of one ``send_batch``: one future and one loop wake-up for the lot.

Per record, the thread serving the report stores its outcome and counts it;
the last report wakes the loop once, which resolves the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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


class DeliveryBatch:
    """Collects the outcomes of ``size`` records; resolves ``future`` when all came."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        topic: str,
        size: int,
        translate: Callable[[RdKafkaError], KafkaError],
        on_report: Callable[[bool], None],
    ) -> None:
        self._loop = loop
        self._topic = topic
        self._size = size
        self._translate = translate
        self._on_report = on_report
        self._outcomes: Outcomes = [_NOT_REPORTED] * size
        # next() on a C counter is atomic under the GIL: reports may be served
        # by the poller thread and by a flush on another thread at once.
        self._counted = itertools.count(1)
        # Bound once: a bound method per record would be one more object for
        # the garbage collector to track until the record's report comes.
        self.report = self._report
        self.future: asyncio.Future[Outcomes] = loop.create_future()
        if size == 0:
            self.future.set_result([])

    def callback(self, index: int) -> Callable[[RdKafkaError | None, Message[Any, Any]], None]:
        return functools.partial(self.report, index)

    def fail_from(self, index: int, error: KafkaError) -> None:
        """Records ``index`` and after were never enqueued: they fail with ``error``."""
        for position in range(index, self._size):
            self._outcomes[position] = error
            self._count()

    def _report(self, index: int, error: RdKafkaError | None, message: Message[Any, Any]) -> None:
        # The outcome is built here, on the thread serving the report, so that
        # librdkafka's Message (a copy of the record) is freed at once instead
        # of living, with a tuple around it, until the whole batch is in: a
        # send_many of 100,000 records otherwise spent more time in the
        # garbage collector's full passes than in librdkafka.
        if error is None:
            self._outcomes[index] = metadata_of(message, self._topic)
            self._on_report(True)
        else:
            self._outcomes[index] = self._translate(error)
            self._on_report(False)
        if next(self._counted) == self._size:
            self._done()

    def _count(self) -> None:
        if next(self._counted) == self._size:
            self._done()

    def _done(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        # The batch and its bound method: a cycle until now.
        del self.report
        if not self.future.done():
            self.future.set_result(self._outcomes)
