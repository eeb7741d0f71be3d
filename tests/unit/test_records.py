"""ConsumerRecord: a mutable value type with kpn/kstreams' (aiokafka's) fields and behaviour."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import anyio
import pytest

from kstreams import ConsumerRecord, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, RecordMetadata, TopicPartition


def record(**changes: Any) -> ConsumerRecord[bytes | None, bytes | None]:
    fields: dict[str, Any] = {
        "topic": "t",
        "partition": 1,
        "offset": 7,
        "timestamp": 1_700_000_000_000,
        "timestamp_type": CREATE_TIME,
        "key": b"k",
        "value": b"v",
    }
    fields.update(changes)
    return ConsumerRecord(**fields)


def test_positional_construction_takes_aiokafkas_field_order() -> None:
    """ConsumerRecord(...) takes aiokafka's eleven fields positionally, the last four defaulted."""
    cr = ConsumerRecord("t", 1, 7, 5, CREATE_TIME, b"k", b"v", None, 1, 1, (("h", b"x"),))
    assert [f.name for f in dataclasses.fields(cr)] == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "headers",
    ]
    assert cr.headers == (("h", b"x"),)
    short = ConsumerRecord("t", 1, 7, 5, CREATE_TIME, None, b"v")
    assert (short.checksum, short.serialized_key_size, short.headers) == (None, -1, ())


def test_fields_can_be_assigned_in_place() -> None:
    """A deserializer may set cr.value (or any field) in place, as kpn/kstreams' docs show."""
    cr = record()
    cr.value = {"decoded": True}
    cr.key = "text"
    assert (cr.key, cr.value) == ("text", {"decoded": True})


def test_slots_reject_unknown_attributes() -> None:
    """The record is slotted: a misspelled attribute raises instead of being stored."""
    cr = record()
    with pytest.raises(AttributeError):
        cr.valeu = b"typo"  # type: ignore[attr-defined]


def test_replace_copies_and_leaves_the_original_alone() -> None:
    """dataclasses.replace gives a new record with the changes; the original is unchanged."""
    cr = record()
    copy = dataclasses.replace(cr, value=b"other")
    assert isinstance(copy, ConsumerRecord)
    assert copy.value == b"other"
    assert cr.value == b"v"
    assert dataclasses.replace(cr) == cr
    assert dataclasses.replace(cr) is not cr


def test_equality_and_repr_are_by_value() -> None:
    """Two records with equal fields are equal; repr names every field."""
    assert record() == record()
    assert record() != record(offset=8)
    assert repr(record()).startswith("ConsumerRecord(topic='t', partition=1, offset=7,")


def test_generic_parameters_subscript_and_isinstance() -> None:
    """ConsumerRecord[K, V] is usable in annotations, and isinstance checks the plain class."""
    alias = ConsumerRecord[str, dict[str, int]]
    cr = alias("t", 0, 0, 0, CREATE_TIME, "k", {"n": 1})
    assert isinstance(cr, ConsumerRecord)
    assert type(cr) is ConsumerRecord


def test_topic_partition_and_pickling() -> None:
    """topic_partition names the record's partition; a record survives pickling."""
    cr = record()
    assert cr.topic_partition == TopicPartition("t", 1)
    assert pickle.loads(pickle.dumps(cr)) == cr


def test_record_metadata_stays_a_frozen_hashable_value() -> None:
    """RecordMetadata compares and hashes by value, defaults to CREATE_TIME, and is read-only."""
    metadata = RecordMetadata("t", 1, 5, 1_700_000_000_000)
    assert metadata == RecordMetadata("t", 1, 5, 1_700_000_000_000, CREATE_TIME)
    assert hash(metadata) == hash(RecordMetadata("t", 1, 5, 1_700_000_000_000))
    assert RecordMetadata("t", 1, 5, 0, LOG_APPEND_TIME).timestamp_type == LOG_APPEND_TIME
    assert metadata.topic_partition == TopicPartition("t", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        metadata.offset = 6  # type: ignore[misc]


async def test_a_handler_changing_its_record_does_not_change_the_log() -> None:
    """On memory, a handler that sets cr.value leaves the log's record as it was produced."""
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    changed = anyio.Event()

    @engine.stream("mutable", group_id="g", auto_offset_reset="earliest")
    async def change(cr: ConsumerRecord[Any, Any]) -> None:
        cr.value = b"changed"
        changed.set()

    await engine.start()
    try:
        await engine.send("mutable", value=b"as produced")
        with anyio.fail_after(5):
            await changed.wait()
    finally:
        await engine.stop()
    assert [r.value for r in cluster.records(TopicPartition("mutable", 0))] == [b"as produced"]
