"""Client errors become the same kstreams errors on both real backends."""

from __future__ import annotations

import aiokafka.errors as aioerrors
import pytest
from confluent_kafka import KafkaError as RdKafkaError

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.errors import translate as translate_aiokafka
from kstreams.backends.confluent.errors import translate as translate_confluent

# (aiokafka error, librdkafka error code, the kstreams error both become)
SAME_CONDITION = [
    (aioerrors.NodeNotReadyError, RdKafkaError._TRANSPORT, kerrors.KafkaConnectionError),
    (aioerrors.KafkaConnectionError, RdKafkaError._ALL_BROKERS_DOWN, kerrors.KafkaConnectionError),
    (
        aioerrors.CoordinatorNotAvailableError,
        RdKafkaError.COORDINATOR_NOT_AVAILABLE,
        kerrors.KafkaConnectionError,
    ),
    (aioerrors.NotCoordinatorError, RdKafkaError.NOT_COORDINATOR, kerrors.KafkaConnectionError),
    (aioerrors.RequestTimedOutError, RdKafkaError.REQUEST_TIMED_OUT, kerrors.KafkaTimeoutError),
    (aioerrors.KafkaTimeoutError, RdKafkaError._MSG_TIMED_OUT, kerrors.KafkaTimeoutError),
    (aioerrors.CommitFailedError, RdKafkaError.REBALANCE_IN_PROGRESS, kerrors.CommitFailedError),
    (
        aioerrors.UnknownTopicOrPartitionError,
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
        kerrors.UnknownTopicOrPartitionError,
    ),
    (
        aioerrors.MessageSizeTooLargeError,
        RdKafkaError.MSG_SIZE_TOO_LARGE,
        kerrors.RecordTooLargeError,
    ),
    (aioerrors.ProducerFenced, RdKafkaError.PRODUCER_FENCED, kerrors.ProducerFencedError),
]


@pytest.mark.parametrize(("aiokafka_error", "rd_code", "expected"), SAME_CONDITION)
def test_one_condition_is_one_kstreams_error_on_both_backends(
    aiokafka_error: type[Exception], rd_code: int, expected: type[kerrors.KafkaError]
) -> None:
    """The aiokafka and librdkafka errors for one condition translate to the same class."""
    assert type(translate_aiokafka(aiokafka_error("boom"))) is expected
    assert type(translate_confluent(RdKafkaError(rd_code))) is expected


def test_unmapped_client_errors_are_still_kstreams_errors() -> None:
    """An error neither map names becomes the base KafkaError, never the client's own class."""
    assert type(translate_aiokafka(aioerrors.StaleMetadata("x"))) is kerrors.KafkaError
    assert type(translate_confluent(RdKafkaError(RdKafkaError.INVALID_MSG))) is kerrors.KafkaError
