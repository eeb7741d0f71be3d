"""Value types under the module path kpn/kstreams users import them from."""

from kstreams.records import RecordMetadata, TopicPartition, TopicPartitionOffset
from kstreams.types import BatchEvent, GetMany

__all__ = ["BatchEvent", "GetMany", "RecordMetadata", "TopicPartition", "TopicPartitionOffset"]
