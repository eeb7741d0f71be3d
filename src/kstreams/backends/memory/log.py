"""One partition's append-only log, transaction markers included.

An entry's index in the log is its offset: nothing is ever removed, so the
log start stays 0. A data entry is stored as a plain tuple, the log's truth; a
handler that changes the record it was given never changes the log. Each
record object is handed out at most once: the first fetch of an offset gets
the one built when it was appended (building it on the producer's side keeps
the consumer's per-record path as short as a real client's), every later
read gets a fresh one built from the tuple. A transaction's commit or abort marker
takes an offset of its own, as in Kafka: it is counted by the end offset and
never returned by a fetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final, cast

from kstreams.ports import RawRecord
from kstreams.records import CREATE_TIME, ConsumerRecord, Headers

# aiokafka's sizing of one record in its own batch: batch header plus the
# worst-case per-record overhead, plus the varint-prefixed fields.
BATCH_HEADER_SIZE: Final = 61
_MAX_RECORD_OVERHEAD: Final = 21

OPEN, COMMITTED, ABORTED = "open", "committed", "aborted"

# object.__new__ and the dataclass's __init__ called directly: calling the
# class goes through type.__call__, ~20 % of a record's cost.
_new_record = object.__new__
_init_record = ConsumerRecord.__init__


class TxnMark:
    """What the log knows of one transaction: whether it is open, committed or aborted."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = OPEN


class Control:
    """A commit or abort marker: an offset of its own, never fetched."""

    __slots__ = ("committed", "txn")

    def __init__(self, txn: TxnMark, committed: bool) -> None:
        self.txn = txn
        self.committed = committed


#: A data entry: (timestamp, key, value, headers, transaction or None).
Entry = tuple[int, bytes | None, bytes | None, Headers, TxnMark | None]


class PartitionLog:
    __slots__ = (
        "entries",
        "handed",
        "open",
        "partition",
        "prebuilt",
        "topic",
        "transactional",
        "waiters",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.entries: list[Entry | Control] = []
        # Per offset, the record built at append for its first reader; offsets
        # below ``handed`` had theirs handed out (or passed over) already.
        self.prebuilt: list[RawRecord | None] = []
        self.handed = 0
        self.waiters: set[asyncio.Future[None]] = set()
        # The first offset of every open transaction that wrote here: the
        # smallest is the last stable offset.
        self.open: dict[TxnMark, int] = {}
        # Whether any transaction ever wrote here: until then reads take the
        # fast path with no markers to skip.
        self.transactional = False

    @property
    def end(self) -> int:
        """The high watermark: the offset the next entry will get."""
        return len(self.entries)

    def last_stable(self) -> int:
        """The first offset of the oldest open transaction, or the end when none is open."""
        return min(self.open.values()) if self.open else len(self.entries)

    def append(
        self,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        txn: TxnMark | None = None,
    ) -> int:
        entries = self.entries
        offset = len(entries)
        entry: Entry = (timestamp, key, value, headers, txn)
        entries.append(entry)
        self.prebuilt.append(self._build(offset, entry) if txn is None else None)
        if txn is not None:
            self.transactional = True
            self.open.setdefault(txn, offset)
        if self.waiters:
            self.wake()
        return offset

    def end_transaction(self, txn: TxnMark, *, committed: bool) -> None:
        """Write ``txn``'s marker; its records stop holding back the last stable offset."""
        self.entries.append(Control(txn, committed))
        self.prebuilt.append(None)
        self.open.pop(txn, None)
        self.wake()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, set()
        wake(waiters)

    def read(
        self, position: int, limit: int, *, committed: bool, fetch: bool = True
    ) -> tuple[list[RawRecord], int]:
        """Up to ``limit`` records from ``position`` never handed out before, and the
        position after them.

        ``committed`` is read_committed isolation: reading stops at the last
        stable offset, and records of aborted transactions are skipped.
        Markers are skipped either way. ``fetch=False`` (a look at the log)
        builds every record afresh and leaves the prebuilt ones to fetches.
        """
        entries = self.entries
        build = self._build
        if not self.transactional:
            stop = min(position + limit, len(entries))
            data = cast("list[Entry]", entries)
            handed = self.handed if fetch else stop
            if position >= handed:
                records = cast("list[RawRecord]", self.prebuilt[position:stop])
                self.prebuilt[position:stop] = [None] * (stop - position)
            else:
                cut = min(handed, stop)
                records = [build(offset, data[offset]) for offset in range(position, cut)]
                if cut < stop:
                    records += cast("list[RawRecord]", self.prebuilt[cut:stop])
                    self.prebuilt[cut:stop] = [None] * (stop - cut)
            if fetch and stop > self.handed:
                self.handed = stop
            return records, stop
        stop = self.last_stable() if committed else len(entries)
        records = []
        while position < stop and len(records) < limit:
            entry = entries[position]
            if not isinstance(entry, Control) and not (
                committed and entry[4] is not None and entry[4].state == ABORTED
            ):
                records.append(build(position, entry))
            position += 1
        return records, position

    def _build(self, offset: int, entry: Entry) -> RawRecord:
        timestamp, key, value, headers, _ = entry
        record: RawRecord = _new_record(ConsumerRecord)
        _init_record(
            record,
            self.topic,
            self.partition,
            offset,
            timestamp,
            CREATE_TIME,
            key,
            value,
            None,
            -1 if key is None else len(key),
            -1 if value is None else len(value),
            headers,
        )
        return record


def varint_size(value: int) -> int:
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    size = BATCH_HEADER_SIZE + _MAX_RECORD_OVERHEAD
    for field in (key, value):
        length = -1 if field is None else len(field)
        size += varint_size(length) + max(length, 0)
    size += varint_size(len(headers))
    for name, data in headers:
        encoded = name.encode()
        size += varint_size(len(encoded)) + len(encoded) + varint_size(len(data)) + len(data)
    return size


def as_bytes(what: str, data: Any) -> bytes | None:
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or None (or set a {what}_serializer), got {data!r}")


def wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
