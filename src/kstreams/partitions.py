"""What a stream's consumer knows about one partition it owns.

One :class:`PartitionState` per partition per assignment: a partition that is
revoked and assigned again gets a new one. Progress recorded on an old state
object (a record that finished after its partition was revoked) therefore
never reaches a commit, whatever the client reports as its assignment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from typing import Protocol, cast

from kstreams.ports import RawRecord
from kstreams.records import TopicPartition


class PartitionState:
    """Handled, committed, paused, seeking, revoking: one partition's state in one place.

    ``handled`` is the next-to-read offset after the contiguous prefix of
    handled records: the only offset ever committed for this partition.
    """

    __slots__ = (
        "_done",
        "_handled",
        "_live_from",
        "_window",
        "committed",
        "flow_paused",
        "live",
        "owned",
        "position",
        "revoking",
        "running",
        "seek_to",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self._handled: int | None = None
        #: The chunk a loop hands out one record after another (see hand_out), and
        #: its position when that began or ``handled`` was last set.
        self.live: Chunk | None = None
        self._live_from = 0
        self.committed: int | None = None
        #: The offset after the last record buffered, or the target of the last
        #: seek: the position as the user sees it once the buffer is drained.
        self.position: int | None = None
        #: Paused by the consumer because its buffer is full (user pauses are
        #: kept by the consumer, they outlive an assignment).
        self.flow_paused = False
        #: A seek to apply to the client once the fetch under way returns
        #: (a user seek, or the rewind of a pause that dropped buffered records).
        self.seek_to: int | None = None
        #: Being revoked: nothing more of it is handed out.
        self.revoking = False
        #: False once revoked: later progress on this object is ignored.
        self.owned = True
        #: Records handed to concurrent handlers and not finished yet.
        self.running = 0
        # Out-of-order completions (concurrent handlers): offsets handed out in
        # order, and those of them that finished.
        self._window: deque[int] = deque()
        self._done: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"<PartitionState {self.tp.topic}[{self.tp.partition}] handled={self.handled} "
            f"committed={self.committed} revoking={self.revoking} owned={self.owned}>"
        )

    @property
    def handled(self) -> int | None:
        live = self.live
        if live is not None:
            # Every record the live chunk's loop passed is handled, but the one in hand.
            done = live.pos - 1
            if done > self._live_from:
                return live.records[done - 1].offset + 1
        return self._handled

    @handled.setter
    def handled(self, offset: int | None) -> None:
        live = self.live
        if live is not None:
            self._live_from = max(self._live_from, live.pos - 1)
        self._handled = offset

    # -- one record after another: handled offsets kept by the chunk --------

    def hand_out(self, chunk: Chunk) -> int:
        """A loop hands out ``chunk``'s records through ``chunk.it``, awaiting each one's
        handler before it takes the next: until :meth:`hand_back`, each record it took
        counts as handled but the last one, in hand. No per-record bookkeeping.

        Returns how many records of it wait in the buffer (they count as taken)."""
        self.live = chunk
        self._live_from = chunk.pos
        return chunk.remaining

    def hand_back(self, *, last_handled: bool) -> int:
        """The loop of :meth:`hand_out` stopped; ``last_handled``: the handler of the
        record it took last returned (and counts). Returns how many wait in the buffer."""
        live = self.live
        if live is None:
            return 0
        done = live.pos if last_handled else live.pos - 1
        if done > self._live_from:
            self._handled = live.records[done - 1].offset + 1
        self.live = None
        return live.remaining

    # -- concurrent handling: the contiguous handled prefix -----------------

    def started(self, offset: int) -> None:
        """A record was handed to a concurrent handler; offsets arrive in increasing order."""
        self._window.append(offset)
        self.running += 1

    def finished(self, offset: int, *, handled: bool = True) -> None:
        """The record at ``offset`` finished; advance ``handled`` over the finished prefix.

        ``handled=False`` (it failed) keeps it, and so everything after it,
        uncommitted until :meth:`skip` or a new assignment decides.
        """
        self.running -= 1
        if handled:
            self._mark(offset)

    def skip(self, offset: int) -> None:
        """Count a failed record as done (the RESTART policy skips it)."""
        self._mark(offset)

    def _mark(self, offset: int) -> None:
        window = self._window
        if not window or window[0] != offset:
            self._done.add(offset)
            return
        window.popleft()
        end = offset + 1
        done = self._done
        while window and window[0] in done:
            later = window.popleft()
            done.discard(later)
            end = later + 1
        self._handled = end  # never live: concurrent handlers take records one by one

    @property
    def unfinished(self) -> int | None:
        """The lowest offset handed to a concurrent handler and not finished, if any."""
        return self._window[0] if self._window else None


class _ListIterator(Iterator[RawRecord], Protocol):
    def __length_hint__(self) -> int: ...
    def __setstate__(self, index: int, /) -> None: ...


class Chunk:
    """Records of one partition from one fetch, handed out front to back.

    ``records[pos:]`` wait in the buffer; ``records[:pos]`` were handed out.
    The position is that of the iterator ``it``: handing a record out is
    ``next(it)``, and a loop handing them out keeps no count of its own.
    Dropping the chunk (revoke, seek, pause) truncates ``records`` at ``pos``
    so a loop handing them out stops at once.
    """

    __slots__ = ("it", "part", "records")

    def __init__(self, part: PartitionState, records: list[RawRecord]) -> None:
        self.part = part
        self.records = records
        self.it = cast("_ListIterator", iter(records))

    @property
    def remaining(self) -> int:
        """How many records wait in the buffer."""
        return self.it.__length_hint__()

    @property
    def pos(self) -> int:
        return len(self.records) - self.it.__length_hint__()

    @pos.setter
    def pos(self, index: int) -> None:
        self.it.__setstate__(index)


def drop_chunks(
    chunks: deque[Chunk], parts: Collection[PartitionState]
) -> tuple[dict[TopicPartition, int], int]:
    """Truncate the chunks of ``parts`` at their position, so nothing more is handed out
    of them, and take them out of ``chunks``; return the first dropped offset of each
    partition, and how many records left the buffer's count (a chunk handed out keeps
    its own, see :meth:`PartitionState.hand_out`)."""
    first: dict[TopicPartition, int] = {}
    dropped = 0
    kept: list[Chunk] = []
    for chunk in chunks:
        if chunk.part in parts:
            remaining = chunk.remaining
            if remaining:
                pos = chunk.pos
                first.setdefault(chunk.part.tp, chunk.records[pos].offset)
                if chunk.part.live is not chunk:
                    dropped += remaining
                # What is in hand still counts.
                del chunk.records[pos:]
        else:
            kept.append(chunk)
    if len(kept) != len(chunks):
        chunks.clear()
        chunks.extend(kept)
    return first, dropped
