"""The consumer a stream hands its user, the same on every backend.

Between a :class:`~kstreams.ports.ConsumerPort` and the user's handler, it owns
what the clients differ on, so that they behave identically everywhere:

* a bounded prefetch buffer filled by a fetch task (see :mod:`kstreams.fetcher`);
* one :class:`~kstreams.partitions.PartitionState` per owned partition:
  handled and committed offsets, pauses, pending seeks, revoking. Ownership
  is this consumer's own record, never the client's view of its assignment;
* which records were *handled*: a record handed out is "in hand" until the
  next record is asked for (or its handler returned); only then does its
  offset count as handled, and never when its task was cancelled;
* committing: with auto-commit, handled offsets are committed every
  ``auto_commit_interval_ms``, on revoke and on stop, never an offset whose
  record was not handled, never for a partition this consumer does not own.

User pauses, resumes and seeks are a desired state: applied to the client
at once between fetches, or right after the fetch under way returns (records
it brought from before them are dropped).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

from kstreams.exceptions import ConsumerStoppedError, IllegalStateError
from kstreams.fetcher import Fetcher
from kstreams.partitions import PartitionState
from kstreams.ports import RawRecord
from kstreams.records import TopicPartition

logger = logging.getLogger("kstreams.consumer")

#: ``run`` gives the loop a turn between two records after this long without one (checked
#: every YIELD_CHECK_EVERY records): a handler that never suspends holds no one back long.
YIELD_AFTER_S = 0.001
YIELD_CHECK_EVERY = 64


def _offset_of(record: RawRecord) -> int:
    return record.offset


class StreamConsumer(Fetcher):
    """aiokafka's consumer API over any backend, with commit-after-handling.

    Records come out in partition order. ``getone``/``getmany`` mark what
    they handed out before as handled.
    """

    async def getone(self) -> RawRecord:
        """The next record; the one handed out before it now counts as handled."""
        self._check_not_cancelled()
        held = self._held
        # Taking the next record of the chunk in hand counts the last one (see hand_out).
        if held is not None and held.part.live is held and (record := next(held.it, None)):
            return record
        self._release()
        chunks = self._chunks
        if not chunks or not chunks[0].remaining:
            await self.wait_for_records(None)
        chunk = self._held = chunks[0]
        self._buffered -= chunk.part.hand_out(chunk)
        return next(chunk.it)

    async def run(self, handler: Callable[[RawRecord], Awaitable[Any]]) -> None:
        """Await ``handler`` on every record, in order, until the stream stops.

        A record is handled once ``handler`` returns and its task was not
        cancelled; an exception from it propagates with that record still in
        hand (see :meth:`skip_in_hand`). The per-record path of typed
        handlers: no intermediate coroutine and no bookkeeping per record
        (what is handled follows the chunk's iterator, see ``hand_out``).
        """
        self._release()
        task = asyncio.current_task()
        assert task is not None  # called from a stream's task
        chunks = self._chunks
        turn = 0
        held_since = time.monotonic()
        while True:
            if not chunks or not chunks[0].remaining:
                try:
                    await self.wait_for_records(None)
                except ConsumerStoppedError:
                    if self._closing:
                        return
                    raise
            chunk = self._held = chunks[0]
            part = chunk.part
            # What is handled and buffered follows the chunk's iterator (see hand_out).
            self._buffered -= part.hand_out(chunk)
            try:
                for record in chunk.it:
                    await handler(record)
                    if self._closing:
                        # Only a stop cancels a stream's task, and it sets closing first:
                        # a handler that swallowed that cancellation did not handle its record.
                        if task.cancelling():
                            raise asyncio.CancelledError
                        break
                    turn += 1
                    if turn >= YIELD_CHECK_EVERY:
                        turn = 0
                        if time.monotonic() - held_since >= YIELD_AFTER_S:
                            self._buffered += part.hand_back(last_handled=True)
                            self._signal_release()
                            await asyncio.sleep(0)
                            held_since = time.monotonic()
                            if self._closing:
                                break
                            self._buffered -= part.hand_out(chunk)
            except BaseException:
                self._buffered += part.hand_back(last_handled=False)
                raise
            self._buffered += part.hand_back(last_handled=True)
            self._held = None
            self._signal_release()
            if self._closing:
                return

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[RawRecord]]:
        """Up to ``max_records`` buffered records, waiting at most ``timeout_ms`` for one.

        Everything handed out before counts as handled; this batch is in hand
        until the next call. An empty result comes only after an await.
        """
        self._check_not_cancelled()
        self._release()
        limit = max_records or self._max_records
        only = set(partitions) or None
        if not await self.wait_for_records(timeout_ms / 1000, only):
            return {}
        result: dict[TopicPartition, list[RawRecord]] = {}
        taken = 0
        for chunk in self._chunks:
            if taken >= limit:
                break
            tp = chunk.part.tp
            if only is not None and tp not in only:
                continue
            start = chunk.pos
            end = min(len(chunk.records), start + limit - taken)
            if end <= start:
                continue
            part = chunk.records[start:end]
            taken += len(part)
            chunk.pos = end
            result.setdefault(tp, []).extend(part)
            self._held_batch.append((chunk, start, end))
        self._buffered -= taken
        return result

    def take(self, max_running: int) -> tuple[PartitionState, RawRecord] | None:
        """The next buffered record of a partition with fewer than ``max_running`` records
        outstanding, now outstanding itself; None if there is none.

        For a concurrent runner, which reports the record back with
        :meth:`finished`. Partitions at their limit are passed over, so the
        others' records are not stuck behind them in the buffer.
        """
        chunks = self._chunks
        while chunks and not chunks[0].remaining:
            chunks.popleft()
            self._maybe_resume_flow()
        for chunk in chunks:
            part = chunk.part
            if part.running < max_running and (record := next(chunk.it, None)) is not None:
                self._buffered -= 1
                self.outstanding += 1
                part.started(record.offset)
                self._running[part.tp, record.offset] = record
                return part, record
            # Otherwise its later chunks wait too (the same part is at its limit):
            # a partition is taken in offset order.
        return None

    def finished(self, part: PartitionState, record: RawRecord, *, handled: bool) -> None:
        """A record from :meth:`take` is done (``handled=False``: it failed or was dropped)."""
        part.finished(record.offset, handled=handled)
        self._running.pop((part.tp, record.offset), None)
        self.outstanding -= 1
        self._maybe_resume_flow()
        if self._release_waiter is not None:
            self._signal_release()

    def note_failed(self, part: PartitionState, record: RawRecord) -> None:
        """A concurrent handler failed on ``record``: the one :meth:`skip_in_hand` skips."""
        self._failed = (part, record)
        self._running[part.tp, record.offset] = record

    def in_hand_records(self) -> list[RawRecord]:
        """The records handed out and not handled yet (nothing is marked)."""
        records: list[RawRecord] = []
        if self._failed is not None:
            records.append(self._failed[1])
        held = self._held
        if held is not None and held.pos:
            record = held.records[held.pos - 1]
            if held.part.handled is None or held.part.handled <= record.offset:
                records.append(record)
        for chunk, start, end in self._held_batch:
            records.extend(chunk.records[start:end])
        return records

    def release(self) -> None:
        """Count what is in hand as handled (the caller is done with it)."""
        self._release()

    def skip_in_hand(self) -> list[RawRecord]:
        """Count every record in hand as handled without handling it (RESTART skips it);
        return them."""
        skipped = self.in_hand_records()
        failed, self._failed = self._failed, None
        if failed is not None:
            failed[0].skip(failed[1].offset)
            self._running.pop((failed[0].tp, failed[1].offset), None)
        self._release()
        return skipped

    # -- commits -----------------------------------------------------------

    def handled_offsets(self) -> dict[TopicPartition, int]:
        """Next-to-read offsets of every owned partition whose records were handled."""
        return {tp: p.handled for tp, p in self._parts.items() if p.handled is not None}

    def in_hand(self, partition: TopicPartition, offset: int) -> RawRecord | None:
        """The record at ``offset`` of ``partition`` if it was handed out and is not handled yet."""
        if self._running:
            running = self._running.get((partition, offset))
            if running is not None:
                return running
        spans = list(self._held_batch)
        if self._held is not None and self._held.pos:
            spans.append((self._held, self._held.pos - 1, self._held.pos))
        for chunk, start, end in spans:
            if chunk.part.tp == partition:
                records = chunk.records
                i = bisect.bisect_left(records, offset, start, end, key=_offset_of)
                if i < end and records[i].offset == offset:
                    return records[i]
        return None

    def _in_hand_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for chunk, _, end in self._held_batch:
            offsets[chunk.part.tp] = chunk.records[end - 1].offset + 1
        held = self._held
        if held is not None and held.pos:
            offsets[held.part.tp] = held.records[held.pos - 1].offset + 1
        return offsets

    def _has_in_hand(self, parts: Collection[PartitionState]) -> bool:
        held = self._held
        if held is not None and held.part in parts and held.pos:
            handled = held.part.handled
            if handled is None or handled <= held.records[held.pos - 1].offset:
                return True
        if any(chunk.part in parts for chunk, _, _ in self._held_batch):
            return True
        return any(part.running for part in parts)

    async def commit(self, offsets: Mapping[TopicPartition, Any] | None = None) -> None:
        """Commit ``offsets``, or else everything handed out so far, the record in hand included.

        Offsets are next-to-read offsets (ints, or objects with an ``offset``
        attribute as aiokafka's ``OffsetAndMetadata``), of partitions this
        consumer owns (``IllegalStateError`` otherwise). With concurrent
        handlers, "handed out" is the contiguous prefix of finished records.
        """
        parts = self._parts
        if offsets is None:
            to_commit = {**self.handled_offsets(), **self._in_hand_offsets()}
            to_commit = {
                tp: o
                for tp, o in to_commit.items()
                if tp in parts and parts[tp].owned and parts[tp].committed != o
            }
        else:
            to_commit = {tp: int(getattr(o, "offset", o)) for tp, o in offsets.items()}
            self._check_assigned(to_commit)
        if to_commit:
            await self._port.commit(to_commit)
            for tp, offset in to_commit.items():
                part = parts.get(tp)
                if part is not None:
                    part.committed = offset

    async def committed(self, partition: TopicPartition) -> int | None:
        return await self._port.committed(partition)

    # -- rebalances (called by the port through the stream) ----------------

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Hand out nothing more of ``revoked``, let their records in hand finish, commit
        what was handled, then tell the user's listener."""
        if self._port_closing or not revoked:
            # An empty revoke tells nobody anything (real clients never send one).
            return
        parts = [p for tp in revoked if (p := self._parts.get(tp)) is not None]
        self._in_rebalance = True
        self._rebalance_done.clear()
        try:
            for part in parts:
                part.revoking = True
            self._drop_buffered(parts)
            await self._wait_released(parts)
            if self._auto_commit:
                await self._commit_quietly(parts)
            if self._listener is not None:
                await self._listener.on_partitions_revoked(revoked)
        except asyncio.CancelledError:
            # Closing mid-revoke: the partitions stay ours so close() commits them.
            for part in parts:
                part.revoking = False
            raise
        except BaseException:
            self._disown(parts)
            raise
        else:
            self._disown(parts)
        finally:
            self._in_rebalance = False
            self._rebalance_done.set()

    def _disown(self, parts: Iterable[PartitionState]) -> None:
        for part in parts:
            part.owned = False
            if self._parts.get(part.tp) is part:
                del self._parts[part.tp]

    async def _wait_released(self, parts: list[PartitionState]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain_timeout_s
        while self._has_in_hand(parts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning(
                    "a record of a revoked partition was still being handled after %.1fs; "
                    "it will be redelivered to the partition's next owner",
                    self._drain_timeout_s,
                )
                return
            waiter = self._release_waiter = loop.create_future()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
            finally:
                self._release_waiter = None

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        if self._port_closing:
            return
        lost = [p for tp, p in self._parts.items() if tp not in assigned]
        if lost:
            # Gone without a revoke (an eager client always revokes first).
            self._drop_buffered(lost)
            self._disown(lost)
        for tp in assigned:
            if tp not in self._parts:
                self._parts[tp] = PartitionState(tp)
        self._in_rebalance = True
        self._rebalance_done.clear()
        try:
            # Client pauses survive a rebalance only for partitions it keeps;
            # ours are applied again to what came back.
            if self._user_paused & assigned:
                self._request_sync()
            if self._listener is not None and not self._closed:
                await self._listener.on_partitions_assigned(assigned)
        finally:
            self._in_rebalance = False
            self._rebalance_done.set()

    # -- aiokafka's consumer API -------------------------------------------

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer owns and hands out records of."""
        return frozenset(tp for tp, p in self._parts.items() if not p.revoking)

    def _owned(self, tp: TopicPartition) -> PartitionState:
        part = self._parts.get(tp)
        if part is None:
            raise IllegalStateError(f"partition {tp} is not assigned to this consumer")
        return part

    def _check_assigned(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._owned(tp)

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerStoppedError("the consumer was stopped")

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next; records buffered from before are dropped.

        A no-op for a partition being revoked: nothing more of it is handed out anyway.
        """
        self._check_open()
        part = self._owned(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if part.revoking:
            return
        self._drop_buffered([part])
        part.seek_to = offset
        part.position = offset
        self._request_sync()

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        tps = partitions or tuple(self.assignment())
        self._check_open()
        self._check_assigned(tps)
        starts = await self._port.beginning_offsets(list(tps))
        for tp in tps:
            self.seek(tp, starts[tp])

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        tps = partitions or tuple(self.assignment())
        self._check_open()
        self._check_assigned(tps)
        ends = await self._port.end_offsets(list(tps))
        for tp in tps:
            self.seek(tp, ends[tp])

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer hands out from ``partition``."""
        self._check_open()
        part = self._owned(partition)
        for chunk in self._chunks:
            if chunk.part is part and chunk.pos < len(chunk.records):
                return chunk.records[chunk.pos].offset
        if part.position is not None:
            return part.position
        return await self._port.position(partition)

    def pause(self, *partitions: TopicPartition) -> None:
        """Hand out no more records of ``partitions`` until ``resume``."""
        self._check_open()
        parts = [self._owned(tp) for tp in partitions]
        self._user_paused.update(partitions)
        first = self._drop_buffered(parts)
        for part in parts:
            rewind = first.get(part.tp)
            if rewind is not None and part.seek_to is None:
                # What was fetched but not handed out is fetched again after resume.
                part.seek_to = rewind
                part.position = rewind
        self._request_sync()

    def resume(self, *partitions: TopicPartition) -> None:
        self._check_open()
        self._user_paused.difference_update(partitions)
        self._request_sync()

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(tp for tp in self._user_paused if tp in self._parts)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._port.highwater(partition)

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        return await self._port.end_offsets(list(partitions))

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self._check_open()
        return await self._port.beginning_offsets(list(partitions))

    def committed_offsets(self) -> dict[TopicPartition, int]:
        """Offsets this consumer committed, per owned partition (no broker round-trip)."""
        return {tp: p.committed for tp, p in self._parts.items() if p.committed is not None}

    def positions(self) -> dict[TopicPartition, int]:
        """Per owned partition, the offset of the next record handed out, where known
        without a broker round-trip."""
        positions = {tp: p.position for tp, p in self._parts.items() if p.position is not None}
        for chunk in reversed(self._chunks):
            if chunk.pos < len(chunk.records) and chunk.part.owned:
                positions[chunk.part.tp] = chunk.records[chunk.pos].offset
        return positions

    @property
    def buffered(self) -> int:
        """Records fetched and not yet handed out."""
        return self._in_buffer()
