"""Fetching ahead of the handler into a bounded buffer, for one stream's consumer: a
slow handler never keeps the client from polling (and from staying in its group); when
the buffer stays full, the partitions with buffered records are paused. What the
consumer guarantees is in :mod:`kstreams.consumer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

from kstreams.exceptions import (
    CommitFailedError,
    ConsumerStoppedError,
    KafkaError,
)
from kstreams.partitions import Chunk, PartitionState, drop_chunks
from kstreams.ports import ConsumerPort, RawRecord, RebalanceCallbacks
from kstreams.records import TopicPartition

logger = logging.getLogger("kstreams.consumer")

_FETCH_TIMEOUT_MS = 100
_DEFAULT_MAX_POLL_RECORDS = 500
#: Turns of ``pause_after_s`` a full buffer waits while its handler takes records.
MAX_ROOM_TURNS = 4
#: Bounds of ``close()``: the final commit, the user's revoke listener, the client's close.
COMMIT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 10.0
#: How long the client may reach no broker before the consumer says so at WARNING.
OUTAGE_WARNING_S = 10.0


class Fetcher:
    """The fetch side of a stream's consumer: the fetch task, the bounded buffer, the
    owned partitions' states, the desired pauses and seeks, bounded close.

    :class:`~kstreams.consumer.StreamConsumer` builds the user-facing API on it.
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
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        outage_warning_s: float = OUTAGE_WARNING_S,
    ) -> None:
        self._port = port
        self.group_id = group_id
        self._auto_commit = auto_commit and group_id is not None
        self._commit_interval_s = auto_commit_interval_ms / 1000
        self._max_records = max_poll_records or _DEFAULT_MAX_POLL_RECORDS
        self._max_buffered = max_buffered_records or max(2 * self._max_records, 1000)
        self._drain_timeout_s = revoke_drain_timeout_s
        self._pause_after_s = pause_after_s
        self._commit_timeout_s = commit_timeout_s
        self._close_timeout_s = close_timeout_s
        self._listener = listener

        self._parts: dict[TopicPartition, PartitionState] = {}
        self._user_paused: set[TopicPartition] = set()

        self._chunks: deque[Chunk] = deque()
        self._buffered = 0  # but those of a chunk handed out (see _in_buffer)
        #: Records taken out of the buffer by a concurrent runner, not finished:
        #: they count against ``max_buffered_records`` too.
        self.outstanding = 0
        self._data = asyncio.Event()
        self._room = asyncio.Event()
        self._flow_paused = False
        # The chunk whose last handed-out record is in hand (getone, run), or
        # the slices in hand (getmany): released as handled on the next call.
        self._held: Chunk | None = None
        self._held_batch: list[tuple[Chunk, int, int]] = []
        self._release_waiter: asyncio.Future[None] | None = None
        # Records a concurrent runner took and has not finished, and the one that
        # failed (for in_hand and skip_in_hand).
        self._running: dict[tuple[TopicPartition, int], RawRecord] = {}
        self._failed: tuple[PartitionState, RawRecord] | None = None

        self._last_commit = time.monotonic()
        self._fetching = False
        self._dirty = False
        self._in_rebalance = False
        self._rebalance_done = asyncio.Event()
        self._rebalance_done.set()

        #: Called whenever ``wait_for_records`` would wake (a concurrent runner's event).
        self.on_data: Callable[[], None] | None = None
        #: Commits offsets instead of the port (an exactly-once stream's transaction);
        #: periodic commits are then the stream's, made between records.
        self.committer: Callable[[dict[TopicPartition, int]], Awaitable[None]] | None = None
        self._outage_warning_s = outage_warning_s
        #: Since when (monotonic) the client has reached no broker; None while it does.
        self._outage_since: float | None = None
        self._outage_warned = False

        self._fetch_task: asyncio.Task[None] | None = None
        self._fetch_error: BaseException | None = None
        self._closing = False
        self._closed = False
        self._port_closing = False

    # -- lifecycle ---------------------------------------------------------

    def start_fetching(self) -> None:
        if self._fetch_task is None:
            self._fetch_task = asyncio.get_running_loop().create_task(
                self._fetch_loop(), name=f"kstreams-fetch-{self.group_id}"
            )

    def stop_delivering(self) -> None:
        """Wake a waiting ``getone``; from now on it raises ``ConsumerStoppedError``."""
        self._closing = True
        self._notify()

    @property
    def stopping(self) -> bool:
        return self._closing

    async def close(self) -> None:
        """Stop fetching, commit what was handled, close the client: bounded, never raising.

        The commit is bounded by ``commit_timeout_s``, the user's revoke
        listener by the drain timeout, the client's close by
        ``close_timeout_s``; a failure of any of them is logged and the next
        step still runs.
        """
        if self._closed:
            return
        self.stop_delivering()
        self._closed = True
        try:
            if self._in_rebalance:
                # Cancelling the fetch task now would cut the revoke's commit short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rebalance_done.wait(), self._drain_timeout_s + 1)
            task, self._fetch_task = self._fetch_task, None
            if task is not None:
                task.cancel()
                await asyncio.wait({task}, timeout=self._close_timeout_s)
            if self._auto_commit:
                await self._bounded("final commit", self._commit_handled(), self._commit_timeout_s)
            if self._listener is not None:
                # The clients differ on whether closing revokes; the user's
                # listener hears of it once, here, while commits still work.
                owned = frozenset(self._parts)
                self._in_rebalance = True
                try:
                    await self._bounded(
                        "revoke listener on close",
                        self._listener.on_partitions_revoked(owned),
                        self._drain_timeout_s + self._commit_timeout_s,
                    )
                finally:
                    self._in_rebalance = False
        finally:
            if self._held is not None:  # what a stopped loop had in hand stays unhandled
                self._held.part.hand_back(last_handled=False)
            self._chunks.clear()
            self._buffered = 0
            for part in self._parts.values():
                part.owned = False
            self._parts.clear()
            self._port_closing = True
            await self._bounded("closing the client", self._port.stop(), self._close_timeout_s)

    async def _bounded(self, what: str, work: Awaitable[Any], timeout_s: float) -> None:
        try:
            await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            logger.warning(
                "group %s: %s took longer than %.1fs; gave up", self.group_id, what, timeout_s
            )
        except Exception as exc:
            logger.warning("group %s: %s failed: %r", self.group_id, what, exc)

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
                self._watch_connection()
                if self._dirty:
                    self._apply_desired(batch)
                if batch:
                    self._buffer(batch)
                    if self._in_buffer() + self.outstanding >= self._max_buffered:
                        await self._wait_for_room_or_pause()
                    else:
                        # Let the handler drain before fetching again: the client
                        # prefetches on its own, a greedy loop here only fills the buffer.
                        await asyncio.sleep(0)
                if (
                    self._auto_commit
                    and self.committer is None
                    and time.monotonic() - self._last_commit >= self._commit_interval_s
                ):
                    await self._commit_quietly()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Handed to the consumer side, which raises it from getone/getmany.
            self._fetch_error = exc
            self._notify()

    def _notify(self) -> None:
        """Records arrived, the fetch failed, or the consumer is stopping: wake the waiters."""
        self._data.set()
        if self.on_data is not None:
            self.on_data()

    def _watch_connection(self) -> None:
        if self._port.connected():
            if self._outage_since is not None:
                if self._outage_warned:
                    logger.warning(
                        "group %s: a broker is reachable again after %.1fs",
                        self.group_id,
                        time.monotonic() - self._outage_since,
                    )
                self._outage_since = None
                self._outage_warned = False
            return
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
        elif not self._outage_warned and now - self._outage_since >= self._outage_warning_s:
            self._outage_warned = True
            logger.warning(
                "group %s: no broker reachable for %.1fs; the client keeps trying and "
                "consumption resumes by itself (nothing is lost)",
                self.group_id,
                now - self._outage_since,
            )

    @property
    def reachable(self) -> bool:
        """False while the client has reached no broker for ``outage_warning_s`` or more."""
        since = self._outage_since
        return since is None or time.monotonic() - since < self._outage_warning_s

    def _buffer(self, batch: Mapping[TopicPartition, list[RawRecord]]) -> None:
        parts = self._parts
        added = False
        for tp, records in batch.items():
            part = parts.get(tp)
            if records and part is not None and not part.revoking:
                self._chunks.append(Chunk(part, records))
                self._buffered += len(records)
                part.position = records[-1].offset + 1
                added = True
        if added:
            self._notify()

    async def _wait_for_room_or_pause(self) -> None:
        """The buffer is full: wait a little for the handler, then pause the busy partitions.

        Pausing is the last resort: clients drop what they prefetched for a paused partition.
        Partitions with nothing buffered keep fetching, so a ``getmany`` for one of them is
        never starved by the others (the buffer may then exceed its bound by one fetch).
        """
        self._room.clear()
        # More turns while the handler takes records (a pause costs aiokafka its prefetch: +72 %
        # RSS in rss_aiokafka), unless concurrent lanes starve on a partition with none buffered.
        busy: set[PartitionState] = set()
        for _turn in range(MAX_ROOM_TURNS):
            left = self._in_buffer()
            try:
                await asyncio.wait_for(self._room.wait(), self._pause_after_s)
                return
            except TimeoutError:
                busy = {chunk.part for chunk in self._chunks if chunk.remaining}
                unfed = (p for p in self._parts.values() if p not in busy and not p.revoking)
                starving = self.outstanding and any(p.tp not in self._user_paused for p in unfed)
                if self._in_buffer() >= left or starving:
                    break
        if not self._room.is_set():
            for part in busy:
                part.flow_paused = True
            if busy:
                self._flow_paused = True
                self._request_sync()

    def _maybe_resume_flow(self) -> None:
        if self._in_buffer() + self.outstanding > self._max_buffered // 2:
            return
        self._room.set()
        if self._flow_paused:
            self._flow_paused = False
            for part in self._parts.values():
                part.flow_paused = False
            self._request_sync()

    # -- the desired state: pauses and seeks -------------------------------

    def _request_sync(self) -> None:
        self._dirty = True
        if not self._fetching or self._in_rebalance:
            self._apply_desired({})

    def _apply_desired(self, batch: dict[TopicPartition, list[RawRecord]]) -> None:
        """Bring the client's pauses and positions in line with ours; drop what ``batch``
        brought from before a seek or for a partition now paused."""
        self._dirty = False
        port = self._port
        paused = port.paused()
        for tp, part in self._parts.items():
            if part.revoking:
                continue
            want_paused = part.flow_paused or tp in self._user_paused
            newly_paused = want_paused and tp not in paused
            if newly_paused or part.seek_to is not None:
                records = batch.pop(tp, None)
                if records and part.seek_to is None:
                    # Fetched but never handed out: read again after resume.
                    part.seek_to = records[0].offset
            if part.seek_to is not None:
                port.seek(tp, part.seek_to)
                part.position = part.seek_to
                part.seek_to = None
            if newly_paused:
                port.pause(tp)
            elif not want_paused and tp in paused:
                port.resume(tp)

    def _drop_buffered(self, parts: Collection[PartitionState]) -> dict[TopicPartition, int]:
        """Forget undelivered records of ``parts``; return the first dropped offset of each."""
        if not parts:
            return {}
        first, dropped = drop_chunks(self._chunks, parts)
        self._buffered -= dropped
        self._maybe_resume_flow()
        return first

    # -- handing records out -------------------------------------------------

    def _in_buffer(self) -> int:
        """Records fetched and not handed out yet (a chunk handed out counts its own)."""
        held = self._held
        if held is not None and held.part.live is held:
            return self._buffered + held.remaining
        return self._buffered

    def _release(self) -> None:
        """What was handed out last has been handled."""
        held = self._held
        if held is not None:
            self._held = None
            if held.part.live is held:
                self._buffered += held.part.hand_back(last_handled=True)
            elif pos := held.pos:
                held.part.handled = held.records[pos - 1].offset + 1
        if self._held_batch:
            for chunk, _, end in self._held_batch:
                chunk.part.handled = chunk.records[end - 1].offset + 1
            self._held_batch = []
        self._signal_release()

    def signal_release(self) -> None:
        """Something in hand was handled or given up: wake a revoke waiting for it."""
        self._signal_release()

    def _signal_release(self) -> None:
        waiter = self._release_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _has_data(self, partitions: Collection[TopicPartition] | None) -> bool:
        chunks = self._chunks
        while chunks and not chunks[0].remaining:
            chunks.popleft()
            self._maybe_resume_flow()
        if partitions is None:
            return bool(chunks)
        return any(c.part.tp in partitions and c.remaining for c in chunks)

    async def wait_for_records(
        self,
        timeout_s: float | None = None,
        partitions: Collection[TopicPartition] | None = None,
    ) -> bool:
        """Wait until records (of ``partitions``) are buffered; False on timeout.

        Raises ``ConsumerStoppedError`` once the consumer is stopping, and
        the fetch task's error if it failed. Awaits at least once before
        it returns False, so a loop around it never starves the event loop.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        awaited = False
        while True:
            if self._fetch_error is not None:
                error, self._fetch_error = self._fetch_error, None
                raise error
            if self._closing:
                raise ConsumerStoppedError("the stream is stopping")
            if self._has_data(partitions):
                return True
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                if not awaited:
                    await asyncio.sleep(0)
                return False
            self._data.clear()
            self._maybe_resume_flow()
            awaited = True
            if remaining is None:
                await self._data.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._data.wait(), remaining)

    @staticmethod
    def _check_not_cancelled() -> None:
        # A handler that swallowed a cancellation and asks for more: what it
        # had in hand was aborted, not handled.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    # -- commits -----------------------------------------------------------

    async def _commit_handled(
        self,
        parts: Iterable[PartitionState] | None = None,
        also: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Commit the handled offsets of ``parts`` (all owned ones), ``also`` included.

        Through the ``committer`` (an exactly-once stream's transaction) when
        there is one: then always every owned partition, since the
        transaction holds the outputs of all of them.
        """
        committer = self.committer
        if committer is not None:
            parts = None
        chosen = list(self._parts.values() if parts is None else parts)
        handled = {p.tp: p.handled for p in chosen if p.owned and p.handled is not None}
        if also:
            handled.update((tp, offset) for tp, offset in also.items() if tp in self._parts)
        offsets = {
            tp: offset for tp, offset in handled.items() if offset != self._parts[tp].committed
        }
        self._last_commit = time.monotonic()
        if offsets:
            await (self._port.commit if committer is None else committer)(offsets)
            for tp, offset in offsets.items():
                part = self._parts.get(tp)
                if part is not None:
                    part.committed = offset

    async def commit_handled(self, also: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit what was handled now, ``also`` included (the record just finished)."""
        await self._commit_handled(also=also)

    def rewind_handled(self) -> None:
        """Forget what was handled since the last commit (an aborted transaction's work)."""
        for part in self._parts.values():
            part.handled = part.committed

    async def _commit_quietly(self, parts: Iterable[PartitionState] | None = None) -> None:
        try:
            await self._commit_handled(parts)
        except CommitFailedError as exc:
            # The next owner of these partitions re-reads from the last commit:
            # a redelivery, never a loss.
            logger.warning("auto-commit failed, group %s rebalanced: %s", self.group_id, exc)
        except KafkaError as exc:
            logger.warning("auto-commit failed for group %s: %s", self.group_id, exc)
