"""What a broker holds, read afresh with aiokafka: the judge of the broker-backed tests."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from kstreams import TopicPartition


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    isolation: str = "read_committed",
    settle_s: float = 1.5,
    field: str = "value",
) -> list[bytes]:
    """The ``field`` of every record a fresh consumer of ``isolation`` reads from ``topic``,
    until nothing came for ``settle_s`` (a consumer kept running across an aborted transaction
    may miss later batches on some brokers: read afresh to judge)."""
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level=isolation,
        enable_auto_commit=False,
    )
    await reader.start()
    values: list[bytes] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            for records in (await reader.getmany(timeout_ms=200)).values():
                values += [getattr(r, field) for r in records]
                quiet_since = time.monotonic()
    finally:
        await reader.stop()
    return values


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, partitions without one left out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        TopicPartition(tp.topic, tp.partition): meta.offset
        for tp, meta in offsets.items()
        if meta.offset >= 0
    }
