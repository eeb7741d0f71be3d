"""librdkafka's structs to and from kstreams' value types, on the worker thread."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Message,
)
from confluent_kafka import TopicPartition as RdTopicPartition

from kstreams.ports import RawRecord
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, ConsumerRecord, Headers, TopicPartition


def rd(partition: TopicPartition, offset: int = OFFSET_INVALID) -> RdTopicPartition:
    return RdTopicPartition(partition.topic, partition.partition, offset)


def build_record(message: Message[Any, Any], topic: str, partition: int) -> RawRecord:
    timestamp_type, timestamp = message.timestamp()
    key, value = message.key(), message.value()
    headers = message.headers()
    # Positional: this runs once per consumed record.
    return ConsumerRecord(
        topic,
        partition,
        cast(int, message.offset()),
        timestamp if timestamp_type != TIMESTAMP_NOT_AVAILABLE else -1,
        LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME,
        key,
        value,
        None,
        len(key) if key is not None else -1,
        len(value) if value is not None else -1,
        # Kafka allows null header values; they are kept as None.
        cast(Headers, tuple(headers)) if headers else (),
    )
