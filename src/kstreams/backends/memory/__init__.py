"""The in-process broker: a Kafka cluster that lives in a ``MemoryCluster`` object.

Append-only partition logs (``log``), consumer groups with eager rebalances
behind a join barrier (``group``), committed offsets per group, and Kafka
transactions with read_committed isolation (``transactions``). The state
lives in the cluster object (``cluster``) handed to every consumer
(``consumer``) and producer (``producer``), never in class globals.
"""

from __future__ import annotations

from kstreams.backends.memory.cluster import MemoryCluster, default_cluster, reset_default_cluster
from kstreams.backends.memory.consumer import MemoryConsumer
from kstreams.backends.memory.producer import MemoryProducer

__all__ = [
    "MemoryCluster",
    "MemoryConsumer",
    "MemoryProducer",
    "default_cluster",
    "reset_default_cluster",
]
