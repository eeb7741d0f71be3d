"""Batches for bulk writes: a GetMany stream on the in-memory backend.

python examples/batch.py

The handler takes list[ConsumerRecord] and gets up to max_records records
at a time; a batch is committed only once the handler returned, so a
failing bulk write commits none of its batch.
"""

from __future__ import annotations

import asyncio

from kstreams import BatchEvent, ConsumerRecord, GetMany, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.records import TopicPartition

TOTAL = 12
cluster = MemoryCluster()
engine = create_engine(title="bulk", backend=Memory(cluster=cluster))
table: list[bytes] = []
batches = 0
all_written = asyncio.Event()


@engine.stream(
    "events",
    group_id="loader",
    auto_offset_reset="earliest",
    get_many=GetMany(max_records=5, timeout_ms=100),
)
async def load(crs: list[ConsumerRecord[bytes, bytes]]) -> None:
    global batches
    batches += 1
    table.extend(cr.value for cr in crs)  # one bulk insert per batch
    print(f"batch of {len(crs)}: offsets {crs[0].offset}..{crs[-1].offset}")
    if len(table) == TOTAL:
        all_written.set()


async def main() -> None:
    await engine.start()
    try:
        metadata = await engine.send_many(
            "events", [BatchEvent(value=b"event-%d" % i) for i in range(TOTAL)]
        )
        print(f"produced {len(metadata)} records with one send_many")
        await asyncio.wait_for(all_written.wait(), 10)
    finally:
        await engine.stop()
    committed = cluster.committed("loader", TopicPartition("events", 0))
    print(f"{len(table)} records written in {batches} batches; committed offset {committed}")


if __name__ == "__main__":
    asyncio.run(main())
