"""kstreams: Kafka stream processing on asyncio, on aiokafka, confluent-kafka or in memory."""

from kstreams import backends, exceptions
from kstreams._version import __version__
from kstreams.consumer import StreamConsumer
from kstreams.dead_letter import DeadLetterMiddleware
from kstreams.engine import StreamEngine, create_engine
from kstreams.middleware import BaseMiddleware, Middleware
from kstreams.policies import StreamErrorPolicy
from kstreams.producer import DEFAULT
from kstreams.rebalance import ManualCommitRebalanceListener, RebalanceListener
from kstreams.records import ConsumerRecord, RecordMetadata, TopicPartition, TopicPartitionOffset
from kstreams.serializers import Deserializer, Serializer
from kstreams.streams import Stream
from kstreams.types import BatchEvent, GetMany, Send

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
    "Middleware",
    "RebalanceListener",
    "RecordMetadata",
    "Send",
    "Serializer",
    "Stream",
    "StreamConsumer",
    "StreamEngine",
    "StreamErrorPolicy",
    "TopicPartition",
    "TopicPartitionOffset",
    "backends",
    "create_engine",
    "exceptions",
]
