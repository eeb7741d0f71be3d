"""The consumer a stream hands its user, the same on every backend.

It sits between a :class:`~kstreams.ports.ConsumerPort` and the user's
handler and owns three things the clients differ on, so that they behave
identically everywhere:

* a bounded prefetch buffer filled by a fetch task, so that a slow handler
  never keeps the client from polling (and from staying in its group); when
  the buffer is full, the assigned partitions are paused;
* which records were *handled*: a record handed out is "in hand" until the
  next record is asked for; only then does its offset count as handled;
* committing: with auto-commit, handled offsets are committed every
  ``auto_commit_interval_ms``, on revoke and on stop, never an offset whose
  record was not handled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kstreams.exceptions import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
)
from kstreams.ports import ConsumerPort, RawRecord, RebalanceCallbacks
from kstreams.records import TopicPartition

logger = logging.getLogger("kstreams.consumer")

_FETCH_TIMEOUT_MS = 100
_DEFAULT_MAX_POLL_RECORDS = 500


def _offset_of(record: RawRecord) -> int:
    return record.offset


class _Chunk:
    """Records of one partition from one fetch, handed out front to back.

    ``records[:handled]`` were handled, ``records[handled:pos]`` are in hand,
    ``records[pos:]`` wait in the buffer. Progress lives here, not in a dict,
    so the per-record cost is two integer stores.
    """

    __slots__ = ("dropped", "handled", "pos", "records", "tp")

    def __init__(self, tp: TopicPartition, records: list[RawRecord]) -> None:
        self.tp = tp
        self.records = records
        self.pos = 0
        self.handled = 0
        # Out of the buffer (consumed, revoked, seeked away): later progress
        # goes straight to StreamConsumer._handled.
        self.dropped = False


class StreamConsumer:
    """aiokafka's consumer API over any backend, with commit-after-handling.

    Records come out in partition order. ``getone``/``getmany`` mark what
    they handed out before as handled.
    """

    def __init__(
        self,
        port: ConsumerPort,
        *,
        group_id: str | None,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        max_poll_records: int | None = None,
        max_buffered_records: int | None = None,
        revoke_drain_timeout_s: float = 5.0,
        pause_after_s: float = 0.5,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        self._port = port
        self.group_id = group_id
        self._auto_commit = auto_commit and group_id is not None
        self._commit_interval_s = auto_commit_interval_ms / 1000
        self._max_records = max_poll_records or _DEFAULT_MAX_POLL_RECORDS
        self._max_buffered = max_buffered_records or max(2 * self._max_records, 1000)
        self._drain_timeout_s = revoke_drain_timeout_s
        self._pause_after_s = pause_after_s
        self._room = asyncio.Event()
        self._listener = listener

        self._chunks: deque[_Chunk] = deque()
        self._buffered = 0
        self._data = asyncio.Event()
        # The chunk whose last handed-out record is in hand (getone, run), or
        # the slices in hand (getmany): released as handled on the next call.
        self._held: _Chunk | None = None
        self._held_batch: list[tuple[_Chunk, int]] = []
        self._release_waiter: asyncio.Future[None] | None = None

        self._handled: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()

        self._user_paused: set[TopicPartition] = set()
        self._flow_paused: set[TopicPartition] = set()
        self._fetching = False
        # Seeks and pauses asked for while a fetch is under way wait for it,
        # so records it brings from before them can be told apart and dropped.
        self._pending: list[tuple[TopicPartition, Callable[[int | None], Awaitable[None]]]] = []

        self._in_rebalance = False
        # Per partition, the offset after the last record buffered (or the
        # target of the last seek): the position as the user sees it.
        self._fetched_to: dict[TopicPartition, int] = {}

        self._fetch_task: asyncio.Task[None] | None = None
        self._fetch_error: BaseException | None = None
        self._closing = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start_fetching(self) -> None:
        if self._fetch_task is None:
            self._fetch_task = asyncio.get_running_loop().create_task(
                self._fetch_loop(), name=f"kstreams-fetch-{self.group_id}"
            )

    def stop_delivering(self) -> None:
        """Wake a waiting ``getone``; from now on it raises ``ConsumerStoppedError``."""
        self._closing = True
        self._data.set()

    async def close(self) -> None:
        """Stop fetching, commit what was handled, and close the client."""
        if self._closed:
            return
        self.stop_delivering()
        self._closed = True
        task, self._fetch_task = self._fetch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            if self._auto_commit:
                await self._commit_handled()
            if self._listener is not None:
                # The clients differ on whether closing revokes; the user's
                # listener hears of it once, here, while commits still work.
                self._in_rebalance = True
                try:
                    await self._listener.on_partitions_revoked(self._port.assignment())
                finally:
                    self._in_rebalance = False
        finally:
            self._chunks.clear()
            self._buffered = 0
            await self._port.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- fetching ----------------------------------------------------------

    async def _fetch_loop(self) -> None:
        port = self._port
        try:
            while True:
                self._fetching = True
                try:
                    batch = await port.getmany(
                        timeout_ms=_FETCH_TIMEOUT_MS, max_records=self._max_records
                    )
                finally:
                    self._fetching = False
                if self._pending:
                    await self._apply_pending(batch)
                if batch:
                    assigned = port.assignment()
                    for tp, records in batch.items():
                        if records and tp in assigned:
                            self._chunks.append(_Chunk(tp, records))
                            self._buffered += len(records)
                            self._fetched_to[tp] = records[-1].offset + 1
                    self._data.set()
                    if self._buffered >= self._max_buffered and not self._flow_paused:
                        await self._wait_for_room_or_pause()
                    else:
                        # Let the handler drain before fetching again: the client
                        # prefetches on its own, a greedy loop here only fills the buffer.
                        await asyncio.sleep(0)
                if (
                    self._auto_commit
                    and time.monotonic() - self._last_commit >= self._commit_interval_s
                ):
                    await self._commit_quietly()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Handed to the consumer side, which raises it from getone/getmany.
            self._fetch_error = exc
            self._data.set()

    async def _wait_for_room_or_pause(self) -> None:
        """The buffer is full: wait a little for the handler, then pause everything.

        Pausing is the last resort because clients drop what they prefetched
        for a paused partition (aiokafka does) and fetch it again on resume.
        """
        self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), self._pause_after_s)
        except TimeoutError:
            self._flow_paused = set(self._port.assignment() - self._user_paused)
            if self._flow_paused:
                self._port.pause(*self._flow_paused)

    async def _apply_pending(self, batch: dict[TopicPartition, list[RawRecord]]) -> None:
        pending, self._pending = self._pending, []
        for tp, apply in pending:
            dropped = batch.pop(tp, None)
            await apply(dropped[0].offset if dropped else None)

    def _drop_buffered(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget undelivered records of ``tps``; return the first dropped offset of each."""
        tps = set(tps)
        first: dict[TopicPartition, int] = {}
        kept: list[_Chunk] = []
        for chunk in self._chunks:
            if chunk.tp in tps:
                remaining = len(chunk.records) - chunk.pos
                if remaining:
                    first.setdefault(chunk.tp, chunk.records[chunk.pos].offset)
                    self._buffered -= remaining
                    # Nothing more is handed out of it; what is in hand still counts.
                    del chunk.records[chunk.pos :]
                self._retire(chunk)
            else:
                kept.append(chunk)
        self._chunks.clear()
        self._chunks.extend(kept)
        self._maybe_resume_flow()
        return first

    def _maybe_resume_flow(self) -> None:
        if self._buffered > self._max_buffered // 2:
            return
        self._room.set()
        if self._flow_paused:
            assigned = self._port.assignment()
            resume = (self._flow_paused - self._user_paused) & assigned
            self._flow_paused = set()
            if resume:
                self._port.resume(*resume)

    # -- handing records out -------------------------------------------------

    def _retire(self, chunk: _Chunk) -> None:
        """``chunk`` leaves the buffer: keep its handled progress."""
        chunk.dropped = True
        if chunk.handled:
            self._handled[chunk.tp] = chunk.records[chunk.handled - 1].offset + 1

    def _mark_handled(self, chunk: _Chunk, end: int) -> None:
        chunk.handled = end
        if chunk.dropped:
            self._handled[chunk.tp] = chunk.records[end - 1].offset + 1

    def _release(self) -> None:
        """What was handed out last has been handled."""
        held = self._held
        if held is not None:
            self._held = None
            self._mark_handled(held, held.pos)
        if self._held_batch:
            for chunk, end in self._held_batch:
                self._mark_handled(chunk, end)
            self._held_batch = []
        self._signal_release()

    def _signal_release(self) -> None:
        waiter = self._release_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_for_data(self, timeout_s: float | None) -> bool:
        """Wait until a chunk is buffered; False on timeout. Raises once closing."""
        while True:
            if self._fetch_error is not None:
                error, self._fetch_error = self._fetch_error, None
                raise error
            if self._closing:
                raise ConsumerStoppedError("the stream is stopping")
            chunks = self._chunks
            while chunks and chunks[0].pos >= len(chunks[0].records):
                self._retire(chunks.popleft())
                self._maybe_resume_flow()
            if chunks:
                return True
            self._data.clear()
            self._maybe_resume_flow()
            if timeout_s is None:
                await self._data.wait()
            else:
                try:
                    await asyncio.wait_for(self._data.wait(), timeout_s)
                except TimeoutError:
                    return False

    async def getone(self) -> RawRecord:
        """The next record; the one handed out before it now counts as handled."""
        self._release()
        chunks = self._chunks
        if not chunks or chunks[0].pos >= len(chunks[0].records):
            await self._wait_for_data(None)
        chunk = chunks[0]
        pos = chunk.pos
        chunk.pos = pos + 1
        self._buffered -= 1
        self._held = chunk
        return chunk.records[pos]

    async def run(self, handler: Callable[[RawRecord], Awaitable[Any]]) -> None:
        """Await ``handler`` on every record, in order, until the stream stops.

        A record is handled once ``handler`` returns; an exception from it
        propagates with that record left unhandled. The per-record path of
        typed handlers: no intermediate coroutine per record.
        """
        self._release()
        chunks = self._chunks
        while True:
            if not chunks or chunks[0].pos >= len(chunks[0].records):
                try:
                    await self._wait_for_data(None)
                except ConsumerStoppedError:
                    if self._closing:
                        return
                    raise
            chunk = chunks[0]
            records = chunk.records
            self._held = chunk
            while (pos := chunk.pos) < len(records):
                chunk.pos = pos + 1
                self._buffered -= 1
                await handler(records[pos])
                chunk.handled = pos + 1
                if chunk.dropped:
                    self._handled[chunk.tp] = records[pos].offset + 1
                    break
                if self._release_waiter is not None:
                    self._signal_release()
                if self._closing:
                    self._held = None
                    return
            self._held = None

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[RawRecord]]:
        """Up to ``max_records`` buffered records, waiting at most ``timeout_ms`` for one.

        Everything handed out before counts as handled; this batch is in hand
        until the next call.
        """
        self._release()
        limit = max_records or self._max_records
        if not await self._wait_for_data(timeout_ms / 1000):
            return {}
        only = set(partitions)
        result: dict[TopicPartition, list[RawRecord]] = {}
        taken = 0
        for chunk in self._chunks:
            if taken >= limit:
                break
            if only and chunk.tp not in only:
                continue
            end = min(len(chunk.records), chunk.pos + limit - taken)
            if end <= chunk.pos:
                continue
            part = chunk.records[chunk.pos : end]
            taken += len(part)
            chunk.pos = end
            result.setdefault(chunk.tp, []).extend(part)
            self._held_batch.append((chunk, end))
        self._buffered -= taken
        return result

    # -- commits -----------------------------------------------------------

    def handled_offsets(self) -> dict[TopicPartition, int]:
        """Next-to-read offsets of every partition whose records were handled."""
        handled = dict(self._handled)
        for chunk in self._chunks:
            if chunk.handled:
                handled[chunk.tp] = chunk.records[chunk.handled - 1].offset + 1
        return handled

    def in_hand(self, partition: TopicPartition, offset: int) -> RawRecord | None:
        """The record at ``offset`` of ``partition`` if it was handed out and is not handled yet."""
        spans = list(self._held_batch)
        if self._held is not None:
            spans.append((self._held, self._held.pos))
        for chunk, end in spans:
            if chunk.tp == partition:
                records = chunk.records
                i = bisect.bisect_left(records, offset, chunk.handled, end, key=_offset_of)
                if i < end and records[i].offset == offset:
                    return records[i]
        return None

    def _in_hand_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for chunk, end in self._held_batch:
            offsets[chunk.tp] = chunk.records[end - 1].offset + 1
        held = self._held
        if held is not None and held.pos > held.handled:
            offsets[held.tp] = held.records[held.pos - 1].offset + 1
        return offsets

    async def _commit_handled(self, only: Iterable[TopicPartition] | None = None) -> None:
        handled = self.handled_offsets()
        assigned = self._port.assignment()
        tps = handled.keys() if only is None else [tp for tp in only if tp in handled]
        offsets = {
            tp: handled[tp]
            for tp in tps
            if tp in assigned and self._committed.get(tp) != handled[tp]
        }
        self._last_commit = time.monotonic()
        if offsets:
            await self._port.commit(offsets)
            self._committed.update(offsets)

    async def _commit_quietly(self, only: Iterable[TopicPartition] | None = None) -> None:
        try:
            await self._commit_handled(only)
        except CommitFailedError as exc:
            # The next owner of these partitions re-reads from the last commit:
            # a redelivery, never a loss.
            logger.warning("auto-commit failed, group %s rebalanced: %s", self.group_id, exc)
        except KafkaError as exc:
            logger.warning("auto-commit failed for group %s: %s", self.group_id, exc)

    async def commit(self, offsets: Mapping[TopicPartition, Any] | None = None) -> None:
        """Commit ``offsets``, or else everything handed out so far, the record in hand included.

        Offsets are next-to-read offsets (ints, or objects with an ``offset``
        attribute as aiokafka's ``OffsetAndMetadata``).
        """
        if offsets is None:
            to_commit = {**self.handled_offsets(), **self._in_hand_offsets()}
            to_commit = {tp: o for tp, o in to_commit.items() if self._committed.get(tp) != o}
        else:
            to_commit = {tp: int(getattr(o, "offset", o)) for tp, o in offsets.items()}
        if to_commit:
            await self._port.commit(to_commit)
            self._committed.update(to_commit)

    async def committed(self, partition: TopicPartition) -> int | None:
        return await self._port.committed(partition)

    # -- rebalances (called by the port through the stream) ----------------

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Let the record in hand finish, drop what was buffered, commit what was handled,
        then tell the user's listener."""
        if self._closed:
            return
        self._in_rebalance = True
        try:
            await self._revoke(revoked)
            if self._listener is not None:
                await self._listener.on_partitions_revoked(revoked)
        finally:
            self._in_rebalance = False
            for tp in revoked:
                self._handled.pop(tp, None)
                self._committed.pop(tp, None)
                self._fetched_to.pop(tp, None)
                self._flow_paused.discard(tp)

    async def _revoke(self, revoked: frozenset[TopicPartition]) -> None:
        held = self._in_hand_offsets()
        if any(tp in revoked for tp in held):
            self._release_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._release_waiter, self._drain_timeout_s)
            except TimeoutError:
                logger.warning(
                    "a record of a revoked partition was still being handled after %.1fs; "
                    "it will be redelivered to the partition's next owner",
                    self._drain_timeout_s,
                )
            finally:
                self._release_waiter = None
        self._drop_buffered(revoked)
        self._pending = [(tp, apply) for tp, apply in self._pending if tp not in revoked]
        if self._auto_commit:
            await self._commit_quietly(revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        if self._closed:
            return
        for tp in assigned:
            # A late release from an earlier ownership must not be committed now.
            self._handled.pop(tp, None)
            self._committed.pop(tp, None)
            self._fetched_to.pop(tp, None)
        # Pauses survive a rebalance in the client only for partitions it
        # keeps; apply ours again to what came back.
        repause = (self._user_paused | self._flow_paused) & assigned
        if repause:
            self._port.pause(*repause)
        if self._listener is not None:
            self._in_rebalance = True
            try:
                await self._listener.on_partitions_assigned(assigned)
            finally:
                self._in_rebalance = False

    # -- aiokafka's consumer API -------------------------------------------

    def assignment(self) -> frozenset[TopicPartition]:
        return self._port.assignment()

    def _check_assigned(self, tps: Iterable[TopicPartition]) -> None:
        assigned = self._port.assignment()
        for tp in tps:
            if tp not in assigned:
                raise IllegalStateError(f"partition {tp} is not assigned to this consumer")

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerStoppedError("the consumer was stopped")

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next; records buffered from before are dropped."""
        self._check_open()
        self._check_assigned([partition])
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self._drop_buffered([partition])
        self._fetched_to[partition] = offset
        if self._fetching and not self._in_rebalance:

            async def apply(_: int | None) -> None:
                self._port.seek(partition, offset)

            self._pending.append((partition, apply))
        else:
            self._port.seek(partition, offset)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        tps = partitions or tuple(self._port.assignment())
        self._check_open()
        self._check_assigned(tps)
        starts = await self._port.beginning_offsets(list(tps))
        for tp in tps:
            self.seek(tp, starts[tp])

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        tps = partitions or tuple(self._port.assignment())
        self._check_open()
        self._check_assigned(tps)
        ends = await self._port.end_offsets(list(tps))
        for tp in tps:
            self.seek(tp, ends[tp])

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer hands out from ``partition``."""
        self._check_open()
        self._check_assigned([partition])
        for chunk in self._chunks:
            if chunk.tp == partition and chunk.pos < len(chunk.records):
                return chunk.records[chunk.pos].offset
        known = self._fetched_to.get(partition)
        if known is not None:
            return known
        return await self._port.position(partition)

    def pause(self, *partitions: TopicPartition) -> None:
        """Hand out no more records of ``partitions`` until ``resume``."""
        self._check_open()
        self._check_assigned(partitions)
        first = self._drop_buffered(partitions)
        for tp in partitions:
            self._user_paused.add(tp)
            if tp in first:
                self._fetched_to[tp] = first[tp]
            if self._fetching and not self._in_rebalance:
                self._pending.append((tp, self._pauser(tp, first.get(tp))))
            else:
                self._pause_at(tp, first.get(tp))

    def _pause_at(self, tp: TopicPartition, rewind_to: int | None) -> None:
        # What was fetched but not handed out is fetched again after resume.
        if rewind_to is not None:
            self._port.seek(tp, rewind_to)
            self._fetched_to[tp] = rewind_to
        self._port.pause(tp)

    def _pauser(
        self, tp: TopicPartition, rewind_to: int | None
    ) -> Callable[[int | None], Awaitable[None]]:
        async def apply(dropped: int | None) -> None:
            self._pause_at(tp, rewind_to if rewind_to is not None else dropped)

        return apply

    def resume(self, *partitions: TopicPartition) -> None:
        self._check_open()
        for tp in partitions:
            self._user_paused.discard(tp)
        resume = [tp for tp in partitions if tp not in self._flow_paused]
        if resume:
            self._port.resume(*resume)

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._user_paused)

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
        """Offsets this consumer committed, per assigned partition (no broker round-trip)."""
        return dict(self._committed)

    def positions(self) -> dict[TopicPartition, int]:
        """Per assigned partition, the offset of the next record handed out, where known
        without a broker round-trip."""
        positions = dict(self._fetched_to)
        for chunk in reversed(self._chunks):
            if chunk.pos < len(chunk.records):
                positions[chunk.tp] = chunk.records[chunk.pos].offset
        return positions

    @property
    def buffered(self) -> int:
        """Records fetched and not yet handed out."""
        return self._buffered
