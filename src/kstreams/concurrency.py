"""Ordered concurrency: up to N records of a stream handled at once, in order per lane.

A *lane* is a partition (``ordering="partition"``) or a key within a
partition (``ordering="key"``; ``None`` keys share one lane per partition).
Records of one lane are handled one after the other in offset order;
different lanes run concurrently, at most ``concurrency`` handlers at a time.
A record waiting behind a busy lane is taken out of the buffer but still
counts against ``max_buffered_records``.

Commits never pass an unfinished record: each partition's state keeps the
contiguous prefix of finished records (:class:`~kstreams.partitions.PartitionState`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from kstreams.exceptions import ConsumerStoppedError

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.handling import Handler
    from kstreams.partitions import PartitionState
    from kstreams.ports import RawRecord

logger = logging.getLogger("kstreams.concurrency")

Ordering = Literal["partition", "key"]
ORDERINGS: tuple[Ordering, ...] = ("partition", "key")

_Item = tuple["PartitionState", "RawRecord"]


class ConcurrentRunner:
    """Runs a stream's handler over its consumer with ``concurrency`` lanes at most in flight."""

    def __init__(
        self,
        consumer: StreamConsumer,
        handler: Handler,
        *,
        concurrency: int,
        ordering: Ordering,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._concurrency = concurrency
        self._by_key = ordering == "key"
        self._lanes: dict[Any, deque[_Item]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot = asyncio.Event()
        self.failure: BaseException | None = None
        self.failed: _Item | None = None

    async def run(self) -> None:
        """Hand records to lanes until the stream stops or a handler fails; then let
        the running handlers finish and raise the first failure."""
        consumer = self._consumer
        consumer.on_data = self._slot.set
        # Records taken per partition at most: one (partition order), or one per
        # handler (key order); the rest stay buffered so other partitions go on.
        per_partition = self._concurrency if self._by_key else 1
        try:
            while self.failure is None and not consumer.stopping:
                while len(self._tasks) >= self._concurrency and self.failure is None:
                    self._slot.clear()
                    await self._slot.wait()
                if self.failure is not None:
                    break
                self._slot.clear()
                item = consumer.take(per_partition)
                if item is None:
                    if consumer.buffered:
                        # Every buffered partition is at its limit: wait for a
                        # handler to finish (or new records, or the stop).
                        await self._slot.wait()
                        continue
                    try:
                        await consumer.wait_for_records(None)
                    except ConsumerStoppedError:
                        if consumer.stopping:
                            break
                        raise
                    continue
                part, record = item
                key = (part.tp, record.key) if self._by_key else part.tp
                lane = self._lanes.get(key)
                if lane is not None:
                    lane.append(item)  # behind its predecessor of the same lane
                    continue
                lane = self._lanes[key] = deque((item,))
                task = asyncio.get_running_loop().create_task(self._run_lane(key, lane))
                self._tasks.add(task)
        finally:
            await self._finish_running()
            consumer.on_data = None
        if self.failure is not None:
            raise self.failure

    async def _finish_running(self) -> None:
        try:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            # The stream's stop gave up waiting: the records in flight are redelivered.
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            raise

    def _startable(self, part: PartitionState) -> bool:
        # A revoking partition's records already taken (waiting behind a busy key) still
        # run: the revoke drains them with the rest and commits past them, where dropping
        # them would leave the later records of other keys, already handled, to the next
        # owner to handle again. Only once the partition is gone are they dropped.
        return self.failure is None and part.owned and not self._consumer.stopping

    async def _run_lane(self, key: Any, lane: deque[_Item]) -> None:
        consumer = self._consumer
        handler = self._handler
        task = asyncio.current_task()
        assert task is not None
        try:
            while lane:
                part, record = lane[0]
                if not self._startable(part):
                    self._drop(lane)
                    return
                handled = False
                try:
                    await handler(record)
                    handled = not task.cancelling()
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    if self.failure is None:
                        self.failure = exc
                        self.failed = (part, record)
                        consumer.note_failed(part, record)
                finally:
                    lane.popleft()
                    consumer.finished(part, record, handled=handled)
                    if not handled and lane:
                        self._drop(lane)
        finally:
            self._lanes.pop(key, None)
            self._tasks.discard(task)
            self._slot.set()

    def _drop(self, lane: deque[_Item]) -> None:
        """Records of ``lane`` that never started: not handled, read again by whoever owns
        their partition next (this consumer after a restart, or another member)."""
        while lane:
            part, record = lane.popleft()
            self._consumer.finished(part, record, handled=False)
