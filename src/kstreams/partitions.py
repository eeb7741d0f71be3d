"""What a stream's consumer knows about one partition it owns.

One :class:`PartitionState` per partition per assignment: a partition that is
revoked and assigned again gets a new one. Progress recorded on an old state
object (a record that finished after its partition was revoked) therefore
never reaches a commit, whatever the client reports as its assignment.
"""

from __future__ import annotations

from collections import deque

from kstreams.ports import RawRecord
from kstreams.records import TopicPartition


class PartitionState:
    """Handled, committed, paused, seeking, revoking: one partition's state in one place.

    ``handled`` is the next-to-read offset after the contiguous prefix of
    handled records: the only offset ever committed for this partition.
    """

    __slots__ = (
        "_done",
        "_window",
        "committed",
        "flow_paused",
        "handled",
        "owned",
        "position",
        "revoking",
        "running",
        "seek_to",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.handled: int | None = None
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
        self.handled = end

    @property
    def unfinished(self) -> int | None:
        """The lowest offset handed to a concurrent handler and not finished, if any."""
        return self._window[0] if self._window else None


class Chunk:
    """Records of one partition from one fetch, handed out front to back.

    ``records[pos:]`` wait in the buffer; ``records[:pos]`` were handed out.
    Dropping the chunk (revoke, seek, pause) truncates ``records`` at ``pos``
    so a loop handing them out stops at once.
    """

    __slots__ = ("part", "pos", "records")

    def __init__(self, part: PartitionState, records: list[RawRecord]) -> None:
        self.part = part
        self.records = records
        self.pos = 0
