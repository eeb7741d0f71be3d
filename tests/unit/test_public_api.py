from __future__ import annotations

import kstreams
import kstreams.exceptions


def test_all_is_pinned() -> None:
    """The public names of kstreams change only on purpose."""
    assert sorted(kstreams.__all__) == sorted(
        [
            "DEFAULT",
            "BaseMiddleware",
            "BatchEvent",
            "ConsumerRecord",
            "DeadLetterMiddleware",
            "Deserializer",
            "GetMany",
            "ManualCommitRebalanceListener",
            "MetricsRebalanceListener",
            "Middleware",
            "ProducerSettings",
            "RebalanceListener",
            "RecordMetadata",
            "Send",
            "SendMany",
            "Serializer",
            "Stream",
            "StreamConsumer",
            "StreamEngine",
            "StreamErrorPolicy",
            "TestStreamClient",
            "TopicPartition",
            "TopicPartitionOffset",
            "__version__",
            "backends",
            "create_engine",
            "exceptions",
            "stream",
        ]
    )
    for name in kstreams.__all__:
        assert hasattr(kstreams, name), name


def test_every_error_is_a_kstreams_error() -> None:
    """Catching KStreamsError catches everything kstreams raises."""
    for name in kstreams.exceptions.__all__:
        error = getattr(kstreams.exceptions, name)
        assert issubclass(error, kstreams.exceptions.KStreamsError), name


def test_unknown_option_is_a_type_error() -> None:
    """A misspelled kwarg fails like a misspelled argument of any Python call."""
    assert issubclass(kstreams.exceptions.UnknownOptionError, TypeError)
    assert issubclass(kstreams.exceptions.BackendNotAvailableError, LookupError)
