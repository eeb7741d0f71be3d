"""The delivery reports of one ``send_batch``: one future and one loop wake-up for the lot.

Per record, the poller thread only stores librdkafka's report and counts it;
the last report wakes the loop once, which then builds every ``RecordMetadata``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Callable
from typing import Any, TypeAlias

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message
from confluent_kafka import KafkaError as RdKafkaError

from kstreams.exceptions import KafkaError
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, RecordMetadata

#: What send_batch resolves to: per record, in order, its metadata or its error.
Outcomes = list[RecordMetadata | KafkaError]

# Quoted: confluent_kafka.Message is not subscriptable at run time.
_Report: TypeAlias = "tuple[RdKafkaError | None, Message[Any, Any] | None] | KafkaError"


def metadata_of(message: Message[Any, Any]) -> RecordMetadata:
    timestamp_type, timestamp = message.timestamp()
    offset = message.offset()
    return RecordMetadata(
        message.topic(),  # type: ignore[arg-type]
        message.partition(),  # type: ignore[arg-type]
        # acks=0: the broker never says where it stored the record.
        offset if offset is not None and offset >= 0 else -1,
        timestamp,
        LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME,
    )


class DeliveryBatch:
    """Collects the reports of ``size`` records; resolves ``future`` when all came."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        translate: Callable[[RdKafkaError], KafkaError],
        on_report: Callable[[bool], None],
    ) -> None:
        self._loop = loop
        self._size = size
        self._translate = translate
        self._on_report = on_report
        self._reports: list[_Report] = [(None, None)] * size
        # next() on a C counter is atomic under the GIL: reports may be served
        # by the poller thread and by a flush on another thread at once.
        self._counted = itertools.count(1)
        self.future: asyncio.Future[Outcomes] = loop.create_future()
        if size == 0:
            self.future.set_result([])

    def callback(self, index: int) -> Callable[[RdKafkaError | None, Message[Any, Any]], None]:
        return functools.partial(self._report, index)

    def fail_from(self, index: int, error: KafkaError) -> None:
        """Records ``index`` and after were never enqueued: they fail with ``error``."""
        for position in range(index, self._size):
            self._reports[position] = error
            self._count()

    def _report(self, index: int, error: RdKafkaError | None, message: Message[Any, Any]) -> None:
        self._reports[index] = (error, message)
        self._on_report(error is None)
        self._count()

    def _count(self) -> None:
        if next(self._counted) == self._size:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self.future.done():
            return
        outcomes: Outcomes = []
        append, translate = outcomes.append, self._translate
        for report in self._reports:
            if isinstance(report, KafkaError):
                append(report)
                continue
            error, message = report
            if error is not None:
                append(translate(error))
            else:
                append(metadata_of(message))  # type: ignore[arg-type]
        self.future.set_result(outcomes)
