"""kstreams records built straight from aiokafka's fetched record batches.

aiokafka's fetcher decodes each fetched batch with a ``PartitionRecords``,
which builds one aiokafka ``ConsumerRecord`` a record (``_consumer_record``);
the adapter then built a kstreams ``ConsumerRecord`` from each of those. On
one client instance only, :func:`build_kstreams_records` makes aiokafka's own
decoding build kstreams records: it swaps that client's fetch buffer (the
fetcher's ``_records`` mapping) for one that, as each fetch is buffered, turns
its ``PartitionRecords`` into :class:`_KstreamsPartitionRecords`, which
overrides only the record builder. Everything else (CRC checks, control
batches, aborted transactions under ``read_committed``, compacted offsets,
positions) stays aiokafka's own code. No aiokafka class or module is changed,
so other aiokafka users in the process are untouched.

It relies on aiokafka internals, unchanged from 0.11 to 0.14: when they do
not match, or aiokafka is to deserialize keys or values itself, the client
keeps its own path and the adapter converts its records (logged once at
DEBUG).
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from aiokafka.consumer import fetcher as _fetcher

from kstreams.records import ConsumerRecord

log = logging.getLogger(__name__)

_PartitionRecords: Any = getattr(_fetcher, "PartitionRecords", None)
_FetchResult: Any = getattr(_fetcher, "FetchResult", None)

_new_record = object.__new__
_init_record = ConsumerRecord.__init__


def _internals_match() -> bool:
    builder = getattr(_PartitionRecords, "_consumer_record", None)
    unpack = getattr(_PartitionRecords, "_unpack_records", None)
    init = getattr(_PartitionRecords, "__init__", None)
    getall = getattr(_FetchResult, "getall", None)
    if builder is None or unpack is None or init is None or getall is None:
        return False
    return (
        builder.__code__.co_varnames[:3] == ("self", "tp", "record")
        and "_consumer_record" in unpack.__code__.co_names
        and "_records_iterator" in init.__code__.co_names
        and "_partition_records" in getall.__code__.co_names
    )


_INTERNALS_MATCH = _internals_match()
_reported = False


def _report_fallback(reason: str) -> None:
    global _reported
    if not _reported:
        _reported = True
        log.debug("aiokafka records are converted one by one: %s", reason)


if _PartitionRecords is not None:

    class _KstreamsPartitionRecords(_PartitionRecords):  # type: ignore[misc]
        """aiokafka's batch decoding, building kstreams records."""

        # Never instantiated: an aiokafka PartitionRecords gets this class,
        # whose layout is its own, before its first record is decoded.

        def __iter__(self) -> Any:
            # aiokafka's FetchResult.getall iterates with a for loop: hand it
            # the decoding generator itself, skipping the per-record __next__
            # wrapper (whose only other work is dropping the generator).
            iterator = self._records_iterator
            return self if iterator is None else iterator

        def _consumer_record(self, tp: Any, record: Any) -> Any:
            key = record.key
            value = record.value
            built = _new_record(ConsumerRecord)
            _init_record(
                built,
                tp.topic,
                tp.partition,
                record.offset,
                record.timestamp,
                record.timestamp_type,
                key,
                value,
                record.checksum,
                -1 if key is None else len(key),
                -1 if value is None else len(value),
                tuple(record.headers),
            )
            return built

    class _KstreamsFetchBuffer(collections.OrderedDict):  # type: ignore[type-arg]
        """A fetcher's buffer of fetches, decoding each into kstreams records."""

        def __setitem__(self, tp: Any, fetched: Any) -> None:
            if type(fetched) is _FetchResult:
                records = fetched._partition_records
                if type(records) is _PartitionRecords:
                    records.__class__ = _KstreamsPartitionRecords
            super().__setitem__(tp, fetched)


def build_kstreams_records(client: Any) -> bool:
    """Make a started aiokafka consumer's ``getmany`` return kstreams records.

    Returns False, leaving the client as it was, when this aiokafka's
    internals are not the ones this module knows.
    """
    if not _INTERNALS_MATCH:
        _report_fallback("this aiokafka's fetcher internals are not the known ones")
        return False
    fetcher: Any = getattr(client, "_fetcher", None)
    buffered = getattr(fetcher, "_records", None)
    if type(buffered) is not collections.OrderedDict:
        _report_fallback("this aiokafka's fetcher has no known fetch buffer")
        return False
    if (
        getattr(fetcher, "_key_deserializer", None) is not None
        or getattr(fetcher, "_value_deserializer", None) is not None
    ):
        _report_fallback("aiokafka deserializes keys or values itself")
        return False
    buffer = _KstreamsFetchBuffer()
    # Fetches buffered while the client started: their records are not
    # decoded yet (getmany has not run), so they switch class too.
    for tp, fetched in buffered.items():
        buffer[tp] = fetched
    fetcher._records = buffer
    return True
