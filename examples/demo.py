"""A producer and a stream, on whatever backend $KSTREAMS_BACKEND names.

KSTREAMS_BACKEND=memory python examples/demo.py
"""

from __future__ import annotations

import asyncio

from kstreams import ConsumerRecord, create_engine

N = 10
engine = create_engine(title="demo")
all_consumed = asyncio.Event()
seen: list[bytes] = []


@engine.stream("demo-greetings", group_id="demo", auto_offset_reset="earliest")
async def print_greetings(cr: ConsumerRecord[bytes, bytes]) -> None:
    print(f"consumed {cr.topic}[{cr.partition}]@{cr.offset} key={cr.key!r} value={cr.value!r}")
    seen.append(cr.value)
    if len(seen) == N:
        all_consumed.set()


async def main() -> None:
    await engine.start()
    try:
        for i in range(N):
            metadata = await engine.send("demo-greetings", value=f"hello {i}", key=f"user-{i % 3}")
            print(f"produced to {metadata.topic}[{metadata.partition}]@{metadata.offset}")
        await asyncio.wait_for(all_consumed.wait(), timeout=30)
    finally:
        await engine.stop()
    print(f"{len(seen)} records produced and consumed on the {engine.backend.name} backend")


if __name__ == "__main__":
    asyncio.run(main())
