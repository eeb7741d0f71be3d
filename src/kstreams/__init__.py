"""kstreams: Kafka stream processing on asyncio, on aiokafka, confluent-kafka or in memory."""

from typing import TYPE_CHECKING, Any

from kstreams import backends, exceptions
from kstreams._version import __version__
from kstreams.clients import ProducerSettings
from kstreams.consumer import StreamConsumer
from kstreams.dead_letter import DeadLetterMiddleware
from kstreams.decorators import stream
from kstreams.engine import StreamEngine, create_engine
from kstreams.middleware import BaseMiddleware, Middleware
from kstreams.policies import StreamErrorPolicy
from kstreams.producer import DEFAULT
from kstreams.rebalance import (
    ManualCommitRebalanceListener,
    MetricsRebalanceListener,
    RebalanceListener,
)
from kstreams.records import ConsumerRecord, RecordMetadata, TopicPartition, TopicPartitionOffset
from kstreams.serializers import Deserializer, Serializer
from kstreams.streams import Stream
from kstreams.types import BatchEvent, GetMany, Send, SendMany

if TYPE_CHECKING:
    from kstreams.prometheus import PrometheusMonitor as PrometheusMonitor
    from kstreams.test_utils import TestStreamClient

# Imported when first asked for: PrometheusMonitor needs prometheus-client, and
# the test client is for tests. (PrometheusMonitor stays out of __all__ so that
# `from kstreams import *` works without prometheus-client.)
_LAZY = {"PrometheusMonitor": "kstreams.prometheus", "TestStreamClient": "kstreams.test_utils"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kstreams' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "__version__",
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
    "backends",
    "create_engine",
    "exceptions",
    "stream",
]
