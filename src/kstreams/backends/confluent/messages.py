"""librdkafka's structs to and from kstreams' value types, and its first metadata request."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from kstreams.backends.connecting import (
    RETRY_EVERY_S,
    log_attempt,
    servers_text,
    start_timeout_s,
    unreachable,
)
from kstreams.ports import RawRecord, RecordBatch
from kstreams.records import CREATE_TIME, LOG_APPEND_TIME, ConsumerRecord, TopicPartition


def first_metadata(
    client: Consumer | Producer, what: str, properties: Mapping[str, Any], request_timeout_s: float
) -> Any:
    """The cluster's metadata (a ``ClusterMetadata``), once a broker answers.

    Tried as :mod:`kstreams.backends.connecting` says.
    """
    servers = servers_text(properties.get("bootstrap.servers"))
    bound_s = start_timeout_s(request_timeout_s)
    began = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        left = bound_s - (time.monotonic() - began)
        try:
            return client.list_topics(timeout=max(0.1, min(left, RETRY_EVERY_S)))
        except KafkaException as exc:
            cause: object = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc
            waited = time.monotonic() - began
            if waited >= bound_s:
                raise unreachable(what, servers, waited, cause) from exc
            log_attempt(what, servers, attempt, waited, cause)


def rd(partition: TopicPartition, offset: int = OFFSET_INVALID) -> RdTopicPartition:
    return RdTopicPartition(partition.topic, partition.partition, offset)


#: A ``consume()`` result grouped by partition, in order: what the worker
#: thread hands to the loop, which builds the records (:func:`to_records`).
MessageBatch = dict[TopicPartition, list["Message[Any, Any]"]]


def group_messages(
    messages: list[Message[Any, Any]],
    partitions: dict[Any, TopicPartition],
    topic: str | None = None,
) -> tuple[MessageBatch, RdKafkaError | None]:
    """The messages grouped by partition, and the first error among them.

    Runs on the worker thread: per message only a few C getters and an
    append, so that the thread holds the GIL for as little as it can while the
    event loop runs the handlers. A run of messages of one partition (the usual
    shape of a ``consume()`` result) costs one lookup, and ``partitions``
    caches the TopicPartitions across calls. Given the ``topic`` every message
    is of (a consumer of one topic), the messages' topics are not read:
    ``topic()`` builds a new string per call, half of this loop's cost.
    """
    if topic is not None:
        return _group_of_topic(messages, partitions, topic)
    batch: MessageBatch = {}
    error: RdKafkaError | None = None
    last: tuple[Any, Any] | None = None
    append: Any = None
    for message in messages:
        problem = message.error()
        if problem is not None:
            if error is None:
                error = problem
            continue
        here = (message.topic(), message.partition())
        if here != last:
            last = here
            partition = partitions.get(here)
            if partition is None:
                partition = partitions[here] = TopicPartition(
                    cast(str, here[0]), cast(int, here[1])
                )
            grouped = batch.get(partition)
            if grouped is None:
                grouped = batch[partition] = []
            append = grouped.append
        append(message)
    return batch, error


def _group_of_topic(
    messages: list[Message[Any, Any]], partitions: dict[Any, TopicPartition], topic: str
) -> tuple[MessageBatch, RdKafkaError | None]:
    batch: MessageBatch = {}
    error: RdKafkaError | None = None
    last: Any = None
    append: Any = None
    for message in messages:
        problem = message.error()
        if problem is not None:
            if error is None:
                error = problem
            continue
        here = message.partition()
        if here != last:
            last = here
            partition = partitions.get((topic, here))
            if partition is None:
                partition = partitions[topic, here] = TopicPartition(topic, cast(int, here))
            grouped = batch.get(partition)
            if grouped is None:
                grouped = batch[partition] = []
            append = grouped.append
        append(message)
    return batch, error


def to_records(batch: MessageBatch) -> RecordBatch:
    """The records of the grouped messages: the one per-record loop of the backend.

    Runs on the event loop, in ``getmany``. Per message only C getters and
    the record's own constructor run; topic and partition come from the group.
    Empties ``batch``'s lists as it goes.
    """
    records: RecordBatch = {}
    # Untyped on purpose: librdkafka's getters are typed Optional, and a cast()
    # per field would cost a call per field per record.
    # object.__new__ and the dataclass's __init__ called directly: calling the
    # class goes through type.__call__, ~20 % of the record's cost.
    new: Callable[..., RawRecord] = object.__new__
    init: Callable[..., None] = ConsumerRecord.__init__
    cls = ConsumerRecord
    for partition, grouped in batch.items():
        messages: list[Any] = grouped
        topic, number = partition.topic, partition.partition
        built: list[RawRecord] = []
        append = built.append
        for index in range(len(messages)):
            message = messages[index]
            # Each message is freed as soon as its record is built: the garbage
            # collector counts live objects, and a batch of messages alive next
            # to its records made it run about once per batch, with a full pass
            # (over every object of the process) every few dozen batches:
            # 0.45 us per record, and the loop's longest stalls.
            messages[index] = None
            timestamp_type, timestamp = message.timestamp()
            key, value, headers = message.key(), message.value(), message.headers()
            record = new(cls)
            init(
                record,
                topic,
                number,
                message.offset(),
                timestamp if timestamp_type != TIMESTAMP_NOT_AVAILABLE else -1,
                LOG_APPEND_TIME if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else CREATE_TIME,
                key,
                value,
                None,
                len(key) if key is not None else -1,
                len(value) if value is not None else -1,
                # Kafka allows null header values; they are kept as None.
                tuple(headers) if headers else (),
            )
            append(record)
        records[partition] = built
    return records
