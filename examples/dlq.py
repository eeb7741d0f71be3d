"""Retries and a dead-letter topic, on the in-memory backend.

python examples/dlq.py

Orders are billed; order 2 has a negative amount and fails every time. The
DeadLetterMiddleware tries it three times in all, then produces it, as it
was consumed, to "orders-dlq" with headers saying why, and billing goes on.
A second stream reads the dead letters (raw: deserializer=None).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from kstreams import ConsumerRecord, DeadLetterMiddleware, Middleware, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.dead_letter import ATTEMPTS_HEADER, EXCEPTION_HEADER, MESSAGE_HEADER
from kstreams.records import TopicPartition


class JsonDeserializer:
    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]:
        return dataclasses.replace(consumer_record, value=json.loads(consumer_record.value))


class JsonSerializer:
    async def serialize(
        self,
        payload: Any,
        headers: dict[str, Any] | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> bytes:
        return json.dumps(payload).encode()


cluster = MemoryCluster()
engine = create_engine(
    title="billing",
    backend=Memory(cluster=cluster),
    serializer=JsonSerializer(),
    deserializer=JsonDeserializer(),
)
billed: list[int] = []
dead_letters: list[ConsumerRecord[bytes, bytes]] = []
good_orders_billed = asyncio.Event()
dead_letter_seen = asyncio.Event()


@engine.stream(
    "orders",
    group_id="billing",
    auto_offset_reset="earliest",
    middlewares=[Middleware(DeadLetterMiddleware, topic="orders-dlq", retries=2, backoff_ms=10)],
)
async def bill(cr: ConsumerRecord[bytes, dict[str, Any]]) -> None:
    order = cr.value
    if order["amount"] < 0:
        print(f"order {order['id']}: attempt failed (negative amount)")
        raise ValueError(f"order {order['id']} has a negative amount")
    billed.append(order["id"])
    print(f"order {order['id']}: billed {order['amount']}")
    if len(billed) == 2:
        good_orders_billed.set()


@engine.stream("orders-dlq", group_id="ops", auto_offset_reset="earliest", deserializer=None)
async def inspect(cr: ConsumerRecord[bytes, bytes]) -> None:
    dead_letters.append(cr)
    headers = dict(cr.headers)
    print(
        f"dead letter: key={cr.key!r} value={cr.value!r} "
        f"error={headers[EXCEPTION_HEADER].decode()}: {headers[MESSAGE_HEADER].decode()} "
        f"attempts={headers[ATTEMPTS_HEADER].decode()}"
    )
    dead_letter_seen.set()


async def main() -> None:
    await engine.start()
    try:
        for order_id, amount in ((1, 10), (2, -5), (3, 7)):
            await engine.send("orders", value={"id": order_id, "amount": amount}, key=f"{order_id}")
        await asyncio.wait_for(dead_letter_seen.wait(), 10)
        await asyncio.wait_for(good_orders_billed.wait(), 10)
    finally:
        await engine.stop()
    committed = cluster.committed("billing", TopicPartition("orders", 0))
    print(f"billed {billed}; {len(dead_letters)} dead letter; 'orders' committed to {committed}")


if __name__ == "__main__":
    asyncio.run(main())
