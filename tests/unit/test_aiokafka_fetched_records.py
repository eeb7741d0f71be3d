"""aiokafka's batch decoding building kstreams records, against its own records converted."""

from __future__ import annotations

import collections
import logging
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from kstreams.backends.aiokafka import fetched
from kstreams.backends.aiokafka.consumer import _convert_records
from kstreams.records import ConsumerRecord

TP = aiokafka.TopicPartition("orders", 2)

#: (key, value, headers) of each record, offsets 0, 1, 2...
RECORDS: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
    (b"k0", b"v0", []),
    (None, b"no key", [("trace", b"1"), ("trace", b"2"), ("empty", b"")]),
    (b"tombstone", None, [("only", b"x")]),
    (None, None, []),
    (b"", b"", [("k", b"v")]),
]


def memory_records(base_offset: int = 0) -> Any:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, (key, value, headers) in enumerate(RECORDS):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
    buffer = builder.build()
    # The batch's base offset is its first 8 bytes.
    buffer[:8] = base_offset.to_bytes(8, "big")
    return MemoryRecords(bytes(buffer))


def partition_records(fetch_offset: int = 0) -> Any:
    return PartitionRecords(TP, memory_records(), [], fetch_offset, None, None, True, 0)


def fetch_result(records: Any) -> Any:
    return FetchResult(TP, assignment=None, partition_records=records, backoff=0)


def as_kstreams(records: Any) -> Any:
    """What the fetch buffer makes of one fetch: the records it then decodes."""
    buffer = fetched._KstreamsFetchBuffer()
    buffer[TP] = fetch_result(records)
    return buffer[TP]._partition_records


def test_the_known_aiokafka_internals_are_detected() -> None:
    """The installed aiokafka's fetcher is one the fast path knows."""
    assert fetched._INTERNALS_MATCH


def test_built_records_equal_aiokafkas_records_converted() -> None:
    """Every field, headers and null keys and values included, is what conversion gives."""
    built = list(as_kstreams(partition_records()))
    assert built == _convert_records(list(partition_records()))
    assert all(type(record) is ConsumerRecord for record in built)
    assert [record.offset for record in built] == list(range(len(RECORDS)))
    assert built[1].headers == (("trace", b"1"), ("trace", b"2"), ("empty", b""))
    assert (built[3].key, built[3].serialized_key_size) == (None, -1)
    assert (built[3].value, built[3].serialized_value_size) == (None, -1)
    assert (built[4].serialized_key_size, built[4].serialized_value_size) == (0, 0)


def test_records_before_the_fetch_offset_are_skipped_as_aiokafka_does() -> None:
    """A fetch from offset 2 yields offsets 2 on, and moves the next fetch offset as aiokafka's."""
    plain, built = partition_records(2), as_kstreams(partition_records(2))
    assert list(built) == _convert_records(list(plain))
    assert built.next_fetch_offset == plain.next_fetch_offset == len(RECORDS)


def test_a_partly_read_fetch_continues_where_it_stopped() -> None:
    """Iterating again after a bounded read (getall's max_records) resumes the same decoding."""
    built = as_kstreams(partition_records())
    first = [record for _, record in zip(range(2), built, strict=False)]
    rest = list(built)
    assert [r.offset for r in first + rest] == list(range(len(RECORDS)))
    assert next(built, None) is None


def test_other_buffered_values_are_stored_unchanged() -> None:
    """Fetch errors and already-switched records pass through the buffer as they are."""
    buffer = fetched._KstreamsFetchBuffer()
    error = SimpleNamespace(kind="FetchError")
    buffer[TP] = error
    assert buffer[TP] is error
    plain = PartitionRecords(TP, memory_records(), [], 0, None, None, True, 0)
    assert type(plain) is PartitionRecords  # other aiokafka users keep the class


def client_with_fetcher(**fetcher_attributes: Any) -> Any:
    fetcher = SimpleNamespace(
        _records=collections.OrderedDict(),
        _key_deserializer=None,
        _value_deserializer=None,
    )
    for name, value in fetcher_attributes.items():
        setattr(fetcher, name, value)
    return SimpleNamespace(_fetcher=fetcher)


def test_a_known_client_gets_the_buffer_and_keeps_buffered_fetches() -> None:
    """Fetches buffered before the switch are kept, and decode into kstreams records."""
    client = client_with_fetcher()
    client._fetcher._records[TP] = fetch_result(partition_records())
    assert fetched.build_kstreams_records(client)
    buffer = client._fetcher._records
    assert type(buffer) is fetched._KstreamsFetchBuffer
    assert list(buffer[TP]._partition_records) == _convert_records(list(partition_records()))


@pytest.mark.parametrize(
    "client",
    [
        pytest.param(SimpleNamespace(), id="no fetcher"),
        pytest.param(client_with_fetcher(_records={}), id="unknown buffer"),
        pytest.param(client_with_fetcher(_key_deserializer=bytes.decode), id="key deserializer"),
        pytest.param(
            client_with_fetcher(_value_deserializer=bytes.decode), id="value deserializer"
        ),
    ],
)
def test_an_unknown_client_keeps_its_own_path(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown internals or aiokafka's own deserializers: the client is left alone, logged once."""
    monkeypatch.setattr(fetched, "_reported", False)
    before = getattr(getattr(client, "_fetcher", None), "_records", None)
    with caplog.at_level(logging.DEBUG, logger=fetched.__name__):
        assert not fetched.build_kstreams_records(client)
        assert not fetched.build_kstreams_records(client)
    assert getattr(getattr(client, "_fetcher", None), "_records", None) is before
    assert len(caplog.records) == 1


def test_internals_that_do_not_match_leave_every_client_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A future aiokafka whose fetcher differs gets the conversion path, not an error."""
    monkeypatch.setattr(fetched, "_INTERNALS_MATCH", False)
    monkeypatch.setattr(fetched, "_reported", True)
    client = client_with_fetcher()
    assert not fetched.build_kstreams_records(client)
    assert type(client._fetcher._records) is collections.OrderedDict
