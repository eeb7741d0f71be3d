"""Every error kstreams raises, named after the condition that caused it.

Client errors (aiokafka, confluent-kafka) are translated at the adapter
boundary, chained with ``raise ... from exc``, so user code catches only
these::

    KStreamsError
    ├── ConfigError                      a setting is wrong or has no equivalent
    │   ├── UnknownOptionError           (also TypeError) a misspelled kwarg
    │   ├── InvalidArgumentError         (also TypeError, ValueError) a value of the
    │   │                                wrong type, or outside what is accepted
    │   └── BackendNotAvailableError     (also LookupError) an extra is missing
    ├── StreamError                      a stream is misdeclared or misused
    │   ├── DuplicateStreamError         two streams with one name
    │   └── HandlerSignatureError        (also TypeError) an annotation kstreams cannot inject
    ├── EngineNotStartedError            send() before start() or after stop()
    ├── SerializationError               (also TypeError) a value could not become bytes
    ├── DeserializationError             a record's bytes could not be decoded
    └── KafkaError                       the client or the broker said no
        ├── KafkaConnectionError         no broker reachable in time
        ├── KafkaTimeoutError            a request did not complete in time
        ├── ConsumerStoppedError         the consumer was used after stop()
        ├── ProducerClosedError          the producer was used after stop()
        ├── IllegalStateError            the call is not valid now (e.g. seek on
        │                                a partition that is not assigned)
        ├── IllegalOperationError        the call is never valid here (e.g. commit
        │                                without a group_id)
        ├── CommitFailedError            the group rebalanced under a commit
        ├── NoOffsetForPartitionError    auto_offset_reset="none" and no commit
        ├── OffsetOutOfRangeError        a fetch position is off the log
        ├── UnknownTopicOrPartitionError
        ├── RecordTooLargeError
        └── ProducerFencedError          another producer took the transactional id

kpn/kstreams' names are aliases of these: ``StreamException`` is
``KStreamsError``, ``DuplicateStreamException`` is ``DuplicateStreamError``,
``EngineNotStartedException`` is ``EngineNotStartedError`` and
``BackendNotSet`` is ``ConfigError`` (kstreams never needs it as such: a
stream without a backend uses its engine's).
"""

from __future__ import annotations


class KStreamsError(Exception):
    """Base class of every kstreams error."""


class ConfigError(KStreamsError):
    """A setting is invalid, or a backend has no faithful equivalent for it."""


class UnknownOptionError(ConfigError, TypeError):
    """A keyword argument that the consumer or producer does not accept."""


class InvalidArgumentError(ConfigError, TypeError, ValueError):
    """A parameter got a value of the wrong type, or one outside what it accepts.

    The message names the parameter, shows the value, and says what is accepted.
    """


class BackendNotAvailableError(ConfigError, LookupError):
    """A backend was named whose client library is not installed."""


class StreamError(KStreamsError):
    """A stream was declared or used in a way kstreams does not support."""


class DuplicateStreamError(StreamError):
    """Two streams share one name in an engine."""


class HandlerSignatureError(StreamError, TypeError):
    """A handler parameter kstreams does not know how to inject."""


class EngineNotStartedError(KStreamsError):
    """The engine was asked to produce before ``start()`` or after ``stop()``."""


class SerializationError(KStreamsError, TypeError):
    """A value could not be turned into bytes: no serializer for its type, or the
    serializer failed (then the cause is chained)."""


class DeserializationError(KStreamsError):
    """A record could not be deserialized; the stream's error policy applies."""


class KafkaError(KStreamsError):
    """An error reported by the Kafka client or the broker."""

    def __init__(self, *args: object) -> None:
        # Clients put their own class name in front of the message ("KafkaConnectionError:
        # Unable to bootstrap"); under the same name here it would be printed twice.
        if args and isinstance(args[0], str):
            prefix = f"{type(self).__name__}: "
            if args[0].startswith(prefix):
                args = (args[0][len(prefix) :], *args[1:])
        super().__init__(*args)


class KafkaConnectionError(KafkaError):
    """No broker could be reached within the client's request timeout."""


class KafkaTimeoutError(KafkaError):
    """A request to the broker did not complete in time."""


class ConsumerStoppedError(KafkaError):
    """The consumer was called after it was stopped."""


class ProducerClosedError(KafkaError):
    """The producer was called after it was stopped."""


class IllegalStateError(KafkaError):
    """The call is not valid in the consumer's current state."""


class IllegalOperationError(KafkaError):
    """The call is never valid for this consumer (e.g. commit without a group)."""


class CommitFailedError(KafkaError):
    """The commit was rejected, typically because the group rebalanced."""


class NoOffsetForPartitionError(KafkaError):
    """No committed offset and ``auto_offset_reset="none"``."""


class OffsetOutOfRangeError(KafkaError):
    """The fetch position is outside the partition's log."""


class UnknownTopicOrPartitionError(KafkaError):
    """The topic or partition does not exist."""


class RecordTooLargeError(KafkaError):
    """The record is larger than the producer or broker accepts."""


class ProducerFencedError(KafkaError):
    """Another producer with the same transactional id fenced this one."""


# kpn/kstreams' names, so `except DuplicateStreamException:` keeps working.
StreamException = KStreamsError
DuplicateStreamException = DuplicateStreamError
EngineNotStartedException = EngineNotStartedError
BackendNotSet = ConfigError


__all__ = [
    "BackendNotAvailableError",
    "BackendNotSet",
    "DuplicateStreamException",
    "EngineNotStartedException",
    "StreamException",
    "CommitFailedError",
    "ConfigError",
    "ConsumerStoppedError",
    "DeserializationError",
    "DuplicateStreamError",
    "EngineNotStartedError",
    "HandlerSignatureError",
    "IllegalOperationError",
    "IllegalStateError",
    "InvalidArgumentError",
    "KStreamsError",
    "KafkaConnectionError",
    "KafkaError",
    "KafkaTimeoutError",
    "NoOffsetForPartitionError",
    "OffsetOutOfRangeError",
    "ProducerClosedError",
    "ProducerFencedError",
    "RecordTooLargeError",
    "SerializationError",
    "StreamError",
    "UnknownOptionError",
    "UnknownTopicOrPartitionError",
]
