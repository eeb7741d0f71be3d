"""The peers' cases, run by ``run.py`` with the peer's own interpreter.

    benchmarks/results/venvs/kpn/bin/python benchmarks/peer_cases.py kpn_consume '{...}'

Same window and same group timings as ``cases.py`` (first record to N-th, join
excluded), and every handler awaits nothing but counts each record. Each peer
runs in its own virtualenv (``peer_envs.py``): kpn/kstreams is imported here
under the name ``kstreams``, which is why this file never sees the project.
"""

# No ``from __future__ import annotations``: kpn/kstreams and FastStream read the
# handler's annotations at declaration and need them as classes, not strings.
import asyncio
import json
import os
import sys
import time
from typing import Any

from cases import (
    GROUP_OPTIONS,
    RD_FETCH_PROPERTIES,
    RD_GROUP_PROPERTIES,
    Params,
    Result,
    Window,
    wait_done,
)

#: Records FastStream reads (of the N pre-loaded).
SLOW_PEER_RECORDS = 50_000


def _counter(window: Window) -> Any:
    n, seen_all = window.n, window.done

    def count() -> None:
        if seen_all.is_set():
            return  # past the window: FastStream reads on until it stops
        seen = window.seen + 1
        window.seen = seen
        if seen == 1:
            window.first = time.perf_counter()
        if seen == n:
            window.last = time.perf_counter()
            window.done.set()

    return count


async def kpn_consume(p: Params) -> Result:
    """kpn/kstreams 0.34.6, a stream with a typed no-op handler, its default settings."""
    import kstreams
    from kstreams import ConsumerRecord, create_engine
    from kstreams.backends.kafka import Kafka

    if "site-packages" not in (kstreams.__file__ or ""):
        raise RuntimeError(f"not kpn/kstreams from its virtualenv: {kstreams.__file__}")
    window = Window(p["records"])
    count = _counter(window)
    engine = create_engine(title="bench", backend=Kafka(bootstrap_servers=[p["bootstrap"]]))

    @engine.stream(p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS)
    async def handle(cr: ConsumerRecord) -> None:  # type: ignore[type-arg]
        count()

    window.restart()
    await engine.start()
    try:
        await wait_done(window, 120)
    finally:
        await engine.stop()
    return window.result()


async def faststream_consume(p: Params) -> Result:
    """FastStream 0.7.8, an aiokafka subscriber with a no-op handler of the body; logger off."""
    from faststream.kafka import KafkaBroker

    # About 100 times slower than the others: 50,000 records are a window of
    # seconds, without a minute per repetition.
    window = Window(min(p["records"], SLOW_PEER_RECORDS))
    count = _counter(window)
    broker = KafkaBroker(p["bootstrap"], logger=None)

    @broker.subscriber(  # type: ignore[untyped-decorator,unused-ignore]
        p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS
    )
    async def handle(body: bytes) -> None:
        count()

    window.restart()
    await broker.start()
    try:
        await wait_done(window, 120)
    finally:
        await broker.stop()
    return window.result()


async def aio_consume(p: Params) -> Result:
    """confluent_kafka.aio: ``AIOConsumer.consume(500)`` batches, a no-op coroutine
    awaited per message (as a framework calling a handler would)."""
    from confluent_kafka.aio import AIOConsumer

    n = p["records"]
    window = Window(n)
    consumer = AIOConsumer(
        {
            "bootstrap.servers": p["bootstrap"],
            "group.id": p["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **RD_GROUP_PROPERTIES,
            **RD_FETCH_PROPERTIES,
        }
    )

    async def handler(message: Any) -> None:
        return None

    await consumer.subscribe([p["topic"]])
    try:
        seen = 0
        deadline = time.perf_counter() + 60
        while seen < n and time.perf_counter() < deadline:
            messages = await consumer.consume(500, 1.0)
            if messages and not seen:
                window.first = time.perf_counter()
            for message in messages:
                if message.error() is None:
                    await handler(message)
                    seen += 1
        window.last = time.perf_counter()
        window.seen = seen
    finally:
        await consumer.close()
    return window.result()


async def aio_send(p: Params) -> Result:
    """confluent_kafka.aio ``AIOProducer.produce()`` every record (no headers: it rejects
    them), then ``flush()`` and gather the deliveries; the raw producer's properties."""
    from confluent_kafka.aio import AIOProducer

    n, value, topic = p["produce_records"], b"x" * p["value_size"], p["produce_topic"]
    producer = AIOProducer(
        {"bootstrap.servers": p["bootstrap"], "linger.ms": 0, "batch.size": 16384, "acks": 1}
    )
    try:
        await producer.list_topics(timeout=10)
        started = time.perf_counter()
        deliveries = [await producer.produce(topic, value=value) for _ in range(n)]
        await producer.flush()
        await asyncio.gather(*deliveries)
        ended = time.perf_counter()
    finally:
        await producer.close()
    return {"records": n, "seconds": ended - started, "rate": n / (ended - started)}


async def _kpn_produce(p: Params, many: bool) -> Result:
    from kstreams import BatchEvent, create_engine
    from kstreams.backends.kafka import Kafka

    n, value = p["produce_records"], b"x" * p["value_size"]
    # A topic of its own, so that what reached it can be counted.
    topic = await _fresh_topic(p["bootstrap"], f"{p['produce_topic']}-{p['group']}")
    engine = create_engine(title="bench", backend=Kafka(bootstrap_servers=[p["bootstrap"]]))
    await engine.start()
    try:
        started = time.perf_counter()
        if many:
            await engine.send_many(topic, batch_events=[BatchEvent(value=value)] * n)
        else:
            for start in range(0, n, p["chunk"]):
                size = min(p["chunk"], n - start)
                await asyncio.gather(*(engine.send(topic, value=value) for _ in range(size)))
        ended = time.perf_counter()
    finally:
        await engine.stop()
    # kpn's send_many appends to aiokafka batches without looking at the result,
    # so records past a batch's size are dropped without an error: the rate
    # counts what reached the topic.
    delivered = await _count(p["bootstrap"], topic)
    return {
        "records": delivered,
        "asked": n,
        "dropped": n - delivered,
        "seconds": ended - started,
        "rate": delivered / (ended - started),
    }


async def _fresh_topic(bootstrap: str, name: str) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        await admin.close()
    return name


async def _count(bootstrap: str, topic: str) -> int:
    """Every record of ``topic``, read from the start until a second passes without one
    (Tansu's end offsets cannot be used: it answers the last batch's base offset + 1)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, i) for i in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        while batch := await consumer.getmany(timeout_ms=1000):
            seen += sum(len(records) for records in batch.values())
        return seen
    finally:
        await consumer.stop()


async def kpn_send_concurrent(p: Params) -> Result:
    """kpn/kstreams ``engine.send``, gathered in chunks (as ``send_concurrent_*``)."""
    return await _kpn_produce(p, many=False)


async def kpn_send_many(p: Params) -> Result:
    """kpn/kstreams ``engine.send_many`` of all the records, its partitioner choosing."""
    return await _kpn_produce(p, many=True)


CASES = {
    "kpn_send_concurrent": kpn_send_concurrent,
    "kpn_send_many": kpn_send_many,
    "kpn_consume": kpn_consume,
    "faststream_consume": faststream_consume,
    "aio_consume": aio_consume,
    "aio_send": aio_send,
}


def main() -> None:
    case, params = sys.argv[1], json.loads(sys.argv[2])
    outcome = asyncio.run(CASES[case](params))
    outcome["pid"] = os.getpid()
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
