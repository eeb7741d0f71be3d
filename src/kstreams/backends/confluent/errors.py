"""librdkafka errors translated to :mod:`kstreams.exceptions` at the boundary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from kstreams.exceptions import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    ProducerFencedError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)

log = logging.getLogger("kstreams.backends.confluent")
librdkafka_log = logging.getLogger("kstreams.backends.confluent.librdkafka")

T = TypeVar("T")

_ERRORS: dict[int, type[KafkaError]] = {
    RdKafkaError._TRANSPORT: KafkaConnectionError,
    RdKafkaError._ALL_BROKERS_DOWN: KafkaConnectionError,
    RdKafkaError._RESOLVE: KafkaConnectionError,
    # The group's coordinator cannot be reached (aiokafka: CoordinatorNotAvailable...).
    RdKafkaError._WAIT_COORD: KafkaConnectionError,
    RdKafkaError.COORDINATOR_NOT_AVAILABLE: KafkaConnectionError,
    RdKafkaError.NOT_COORDINATOR: KafkaConnectionError,
    RdKafkaError._TIMED_OUT: KafkaTimeoutError,
    RdKafkaError._MSG_TIMED_OUT: KafkaTimeoutError,
    RdKafkaError.REQUEST_TIMED_OUT: KafkaTimeoutError,
    RdKafkaError.UNKNOWN_TOPIC_OR_PART: UnknownTopicOrPartitionError,
    RdKafkaError._UNKNOWN_TOPIC: UnknownTopicOrPartitionError,
    RdKafkaError._UNKNOWN_PARTITION: UnknownTopicOrPartitionError,
    RdKafkaError.MSG_SIZE_TOO_LARGE: RecordTooLargeError,
    RdKafkaError.REBALANCE_IN_PROGRESS: CommitFailedError,
    RdKafkaError.ILLEGAL_GENERATION: CommitFailedError,
    RdKafkaError.UNKNOWN_MEMBER_ID: CommitFailedError,
    RdKafkaError.FENCED_INSTANCE_ID: CommitFailedError,
    RdKafkaError._ASSIGNMENT_LOST: CommitFailedError,
    RdKafkaError._AUTO_OFFSET_RESET: NoOffsetForPartitionError,
    RdKafkaError.OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    RdKafkaError._FENCED: ProducerFencedError,
    RdKafkaError.PRODUCER_FENCED: ProducerFencedError,
    RdKafkaError.INVALID_PRODUCER_EPOCH: ProducerFencedError,
    RdKafkaError._STATE: IllegalStateError,
}


def translate(error: RdKafkaError) -> KafkaError:
    """The kstreams error for a librdkafka error."""
    return _ERRORS.get(error.code(), KafkaError)(f"{error.str()} [{error.name()}]")


def error_of(exc: KafkaException) -> RdKafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, RdKafkaError) else None


def translate_exception(exc: KafkaException) -> KafkaError:
    error = error_of(exc)
    return translate(error) if error is not None else KafkaError(str(exc))


def guarded(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with the client's exceptions translated, for a worker job."""

    def job() -> T:
        try:
            return fn()
        except KafkaException as exc:
            raise translate_exception(exc) from exc
        except RuntimeError as exc:
            # confluent-kafka's "Consumer closed"
            if "closed" not in str(exc):
                raise
            raise ConsumerStoppedError(str(exc)) from exc

    return job


def log_client_error(error: RdKafkaError) -> None:
    # librdkafka retries these itself; its log (librdkafka_log) has the detail.
    level = logging.WARNING if error.code() == RdKafkaError._ALL_BROKERS_DOWN else logging.DEBUG
    log.log(level, "confluent client error: %s", error)
