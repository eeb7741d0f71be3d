"""librdkafka's messages to kstreams' records: grouping on the worker, building on the loop."""

from __future__ import annotations

import sys
from typing import Any

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    Message,
)

from kstreams.backends.confluent.messages import group_messages, to_records
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, ConsumerRecord, TopicPartition


def message(topic: str, partition: int, offset: int, **fields: Any) -> Any:
    fields.setdefault("timestamp", (TIMESTAMP_CREATE_TIME, 1000 + offset))
    return Message(topic=topic, partition=partition, offset=offset, **fields)


def test_messages_are_grouped_by_partition_in_order() -> None:
    """Interleaved runs of two partitions come back as one list per partition, in order."""
    messages = [
        message("a", 0, 1),
        message("a", 0, 2),
        message("b", 3, 7),
        message("a", 0, 3),
        message("b", 3, 8),
    ]
    batch, error = group_messages(messages, {})
    assert error is None
    assert {tp: [m.offset() for m in grouped] for tp, grouped in batch.items()} == {
        TopicPartition("a", 0): [1, 2, 3],
        TopicPartition("b", 3): [7, 8],
    }


def test_error_messages_are_left_out_and_the_first_error_returned() -> None:
    """A message carrying an error is not a record; the first error comes back with the batch."""
    first = KafkaError(KafkaError._PARTITION_EOF)
    messages = [
        message("a", 0, 1),
        Message(topic="a", partition=0, error=first),
        Message(topic="a", partition=0, error=KafkaError(KafkaError._AUTO_OFFSET_RESET)),
        message("a", 0, 2),
    ]
    batch, error = group_messages(messages, {})
    assert error is first
    assert [m.offset() for m in batch[TopicPartition("a", 0)]] == [1, 2]


def test_the_partition_cache_gives_one_topic_partition_per_partition() -> None:
    """Batches grouped with the same cache share their TopicPartition objects."""
    cache: dict[tuple[Any, Any], TopicPartition] = {}
    (first,) = group_messages([message("a", 0, 1)], cache)[0]
    (second,) = group_messages([message("a", 0, 2)], cache)[0]
    assert first is second


def test_records_carry_every_field_of_their_message() -> None:
    """Key, value, headers (as tuples), timestamps, their type and serialized sizes are kept."""
    messages = [
        message("a", 0, 1, key=b"k", value=b"vvv", headers=[("h", b"1"), ("h", None)]),
        message("a", 0, 2, timestamp=(TIMESTAMP_LOG_APPEND_TIME, 5)),
        message("a", 0, 3, value=b"", timestamp=(TIMESTAMP_NOT_AVAILABLE, 0)),
    ]
    batch, _ = group_messages(messages, {})
    records = to_records(batch)
    assert records == {
        TopicPartition("a", 0): [
            ConsumerRecord(
                "a", 0, 1, 1001, CREATE_TIME, b"k", b"vvv", None, 1, 3, (("h", b"1"), ("h", None))
            ),
            ConsumerRecord("a", 0, 2, 5, LOG_APPEND_TIME, None, None, None, -1, -1, ()),
            ConsumerRecord("a", 0, 3, -1, CREATE_TIME, None, b"", None, -1, 0, ()),
        ]
    }
    (built,) = records.values()
    assert all(type(record) is ConsumerRecord for record in built)
    assert isinstance(built[0].headers, tuple)


def test_messages_are_released_as_their_records_are_built() -> None:
    """Building the records leaves no reference to the messages in the batch."""
    messages = [message("a", 0, offset, value=b"x") for offset in range(3)]
    before = [sys.getrefcount(m) for m in messages]
    batch, _ = group_messages(messages, {})
    records = to_records(batch)
    assert [sys.getrefcount(m) for m in messages] == before
    assert [list(grouped) for grouped in batch.values()] == [[None, None, None]]
    assert [record.offset for record in records[TopicPartition("a", 0)]] == [0, 1, 2]


def test_a_record_mutated_by_its_handler_changes_nothing_else() -> None:
    """Setting a record's value in place leaves the other records of the batch as they were."""
    batch, _ = group_messages([message("a", 0, 1, value=b"x"), message("a", 0, 2, value=b"x")], {})
    first, second = to_records(batch)[TopicPartition("a", 0)]
    first.value = {"decoded": True}
    assert first.value == {"decoded": True}
    assert second.value == b"x"
    assert first.offset == 1


def test_messages_of_one_known_topic_are_grouped_by_partition_alone() -> None:
    """Given the one topic consumed, grouping gives the same batch and shares the cache."""
    messages = [message("a", 0, 1), message("a", 2, 4), message("a", 0, 2)]
    cache: dict[Any, TopicPartition] = {}
    batch, error = group_messages(messages, cache, "a")
    assert error is None
    assert batch == group_messages(messages, {})[0]
    (known,) = group_messages([message("a", 2, 5)], cache)[0]
    assert known is next(tp for tp in batch if tp.partition == 2)
