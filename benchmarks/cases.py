"""One benchmark case, run in a fresh process by ``run.py``.

    python benchmarks/cases.py CASE '{"bootstrap": "127.0.0.1:9092", ...}'

Prints one line ``RESULT {json}`` on stdout. Every throughput window runs from
the first record seen to the N-th (group join excluded, reported as
``join_s``: from the start call to the first record).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: Group timings of the integration tier: Tansu completes a join in about
#: half of the session timeout. They change nothing on the fetch path.
GROUP_OPTIONS: dict[str, Any] = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}
RD_GROUP_PROPERTIES: dict[str, Any] = {"session.timeout.ms": 1500, "heartbeat.interval.ms": 300}
#: What the raw librdkafka consumers (``raw_confluent``, the ``aio_consume`` peer) set besides,
#: as the confluent backend does: with librdkafka's default fetch.queue.backoff.ms (1000) a
#: drained partition queue waits up to a second for its refill, and their rate flipped from run
#: to run between about 175,000 and 1,000,000 rec/s. The same setting for all three is the fair
#: comparison, and the harder one for kstreams.
RD_FETCH_PROPERTIES: dict[str, Any] = {"fetch.queue.backoff.ms": 10}

Params = dict[str, Any]
Result = dict[str, Any]


class Window:
    """First record to N-th record, and the join before it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.started = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def restart(self) -> None:
        self.started = time.perf_counter()

    def result(self, **extra: Any) -> Result:
        elapsed = self.last - self.first
        return {
            "records": self.seen,
            "seconds": elapsed,
            "rate": self.seen / elapsed if elapsed > 0 else 0.0,
            "join_s": self.first - self.started,
            **extra,
        }


def typed_counter(window: Window, on_first: Callable[[], None] | None = None) -> Any:
    """A typed no-op handler that only counts (what every case's handler does)."""
    from kstreams import ConsumerRecord

    n = window.n

    async def handle(cr: ConsumerRecord[Any, Any]) -> None:
        seen = window.seen + 1
        window.seen = seen
        if seen == 1:
            window.first = time.perf_counter()
            if on_first is not None:
                on_first()
        if seen == n:
            window.last = time.perf_counter()
            window.done.set()

    return handle


def batch_counter(window: Window) -> Any:
    from kstreams import ConsumerRecord

    n = window.n

    async def handle(crs: list[ConsumerRecord[Any, Any]]) -> None:
        if window.seen == 0:
            window.first = time.perf_counter()
        for _cr in crs:
            window.seen += 1
        if window.seen >= n and not window.done.is_set():
            window.last = time.perf_counter()
            window.done.set()

    return handle


#: librdkafka properties for every confluent backend of the run (``--confluent-extra``),
#: to try a setting out; empty by default.
CONFLUENT_EXTRA: dict[str, Any] = {}


def backend_for(name: str, bootstrap: str) -> Any:
    from kstreams.backends import Aiokafka, Confluent

    if name == "aiokafka":
        return Aiokafka(bootstrap_servers=bootstrap)
    if name == "confluent":
        return Confluent(bootstrap_servers=bootstrap, extra_config=CONFLUENT_EXTRA)
    raise ValueError(f"unknown backend {name!r}")


async def wait_done(window: Window, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(window.done.wait(), timeout_s)
    except TimeoutError:
        raise RuntimeError(
            f"only {window.seen} of {window.n} records in {timeout_s:.0f}s"
        ) from None


# -- consuming: the raw clients ------------------------------------------------


async def raw_aiokafka(p: Params) -> Result:
    """aiokafka ``getmany(max_records=500)`` in a loop, touching every record."""
    from aiokafka import AIOKafkaConsumer

    n = p["records"]
    consumer = AIOKafkaConsumer(
        p["topic"],
        bootstrap_servers=p["bootstrap"],
        group_id=p["group"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_OPTIONS,
    )
    window = Window(n)
    await consumer.start()
    try:
        seen = 0
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batch.values():
                if seen == 0:
                    window.first = time.perf_counter()
                for _record in records:
                    seen += 1
        window.last = time.perf_counter()
        window.seen = seen
    finally:
        await consumer.stop()
    return window.result()


def raw_confluent(p: Params) -> Result:
    """confluent ``consume(500)`` in a plain thread, checking each message's error."""
    from confluent_kafka import Consumer

    n = p["records"]
    out: dict[str, float] = {}

    def drain() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": p["bootstrap"],
                "group.id": p["group"],
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **RD_GROUP_PROPERTIES,
                **RD_FETCH_PROPERTIES,
            }
        )
        consumer.subscribe([p["topic"]])
        started = time.perf_counter()
        first = 0.0
        seen = 0
        deadline = started + 60
        while seen < n and time.perf_counter() < deadline:
            messages = consumer.consume(500, 1.0)
            if messages and not seen:
                first = time.perf_counter()
            for message in messages:
                if message.error() is None:
                    seen += 1
        last = time.perf_counter()
        consumer.close()
        out.update(started=started, first=first, last=last, seen=seen)

    thread = threading.Thread(target=drain, name="raw-confluent")
    thread.start()
    thread.join()
    elapsed = out["last"] - out["first"]
    return {
        "records": int(out["seen"]),
        "seconds": elapsed,
        "rate": out["seen"] / elapsed,
        "join_s": out["first"] - out["started"],
    }


# -- consuming: kstreams ---------------------------------------------------------


async def _port_loop(p: Params, backend: str) -> Result:
    """The backend's ConsumerPort alone, ``getmany(max_records=500)`` in a loop: the
    adapter's share of the cost, without the stream, its buffer or a handler."""
    n = p["records"]
    port = backend_for(backend, p["bootstrap"]).create_consumer(
        group_id=p["group"], options={"auto_offset_reset": "earliest", **GROUP_OPTIONS}
    )
    port.subscribe([p["topic"]])
    window = Window(n)
    await port.start()
    try:
        seen = 0
        deadline = time.perf_counter() + 60
        while seen < n and time.perf_counter() < deadline:
            batch = await port.getmany(timeout_ms=1000, max_records=500)
            for records in batch.values():
                if seen == 0:
                    window.first = time.perf_counter()
                for _record in records:
                    seen += 1
        window.last = time.perf_counter()
        window.seen = seen
    finally:
        await port.stop()
    return window.result()


async def port_aiokafka(p: Params) -> Result:
    return await _port_loop(p, "aiokafka")


async def port_confluent(p: Params) -> Result:
    return await _port_loop(p, "confluent")


async def _kstreams_consume(p: Params, backend: str, *, batch: bool) -> Result:
    from kstreams import create_engine

    n = p["records"]
    window = Window(n)
    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    handler = batch_counter(window) if batch else typed_counter(window)
    engine.stream(p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS)(
        handler
    )
    window.restart()
    await engine.start()
    try:
        await wait_done(window, 60)
    finally:
        await engine.stop()
    return window.result()


async def ks_aiokafka(p: Params) -> Result:
    return await _kstreams_consume(p, "aiokafka", batch=False)


async def ks_confluent(p: Params) -> Result:
    return await _kstreams_consume(p, "confluent", batch=False)


async def ks_aiokafka_batch(p: Params) -> Result:
    return await _kstreams_consume(p, "aiokafka", batch=True)


async def ks_confluent_batch(p: Params) -> Result:
    return await _kstreams_consume(p, "confluent", batch=True)


# -- the memory backend ------------------------------------------------------------


def _preloaded_cluster(p: Params) -> Any:
    """A MemoryCluster whose topic ``bench`` holds the run's records over 3 partitions."""
    from kstreams.backends.memory import MemoryCluster

    cluster = MemoryCluster()
    cluster.create_topic("bench", partitions=3)
    value = b"x" * p["value_size"]
    for i in range(p["records"]):
        cluster.append("bench", value, partition=i % 3)
    return cluster


async def memory_consume(p: Params) -> Result:
    """N records appended before the engine starts, through a typed no-op handler."""
    from kstreams import create_engine
    from kstreams.backends import Memory

    n = p["records"]
    cluster = _preloaded_cluster(p)
    window = Window(n)
    engine = create_engine(backend=Memory(cluster=cluster))
    engine.stream("bench", group_id="bench", auto_offset_reset="earliest")(typed_counter(window))
    window.restart()
    await engine.start()
    try:
        await wait_done(window, 60)
    finally:
        await engine.stop()
    return window.result()


async def memory_bare_loop(p: Params) -> Result:
    """Calibration for memory_consume: ``for r in records: await handle(r)`` over the same
    records, read from the same memory log, with the same typed no-op handler."""
    from kstreams.records import TopicPartition

    n = p["records"]
    cluster = _preloaded_cluster(p)
    records = [r for i in range(3) for r in cluster.records(TopicPartition("bench", i))]
    window = Window(n)
    handle = typed_counter(window)
    window.restart()
    for record in records:
        await handle(record)
    return window.result()


async def memory_end_to_end(p: Params) -> Result:
    """``engine.send`` N records, one by one, while a typed no-op handler takes them."""
    from kstreams import create_engine
    from kstreams.backends import Memory
    from kstreams.backends.memory import MemoryCluster

    n = p["records"]
    cluster = MemoryCluster()
    cluster.create_topic("bench", partitions=3)
    value = b"x" * p["value_size"]
    window = Window(n)
    engine = create_engine(backend=Memory(cluster=cluster))
    stream = engine.stream("bench", group_id="bench", auto_offset_reset="earliest")(
        typed_counter(window)
    )
    await engine.start()
    try:
        await stream.wait_until_assigned()
        started = time.perf_counter()
        for _ in range(n):
            await engine.send("bench", value)
        sent = time.perf_counter()
        await wait_done(window, 60)
    finally:
        await engine.stop()
    elapsed = window.last - started
    return {
        "records": n,
        "seconds": elapsed,
        "rate": n / elapsed,
        "send_rate": n / (sent - started),
        "join_s": 0.0,
    }


# -- producing ---------------------------------------------------------------------


def _produce_result(n: int, started: float, ended: float) -> Result:
    return {"records": n, "seconds": ended - started, "rate": n / (ended - started)}


async def raw_send_aiokafka(p: Params) -> Result:
    """aiokafka ``send()`` every record, then ``gather`` the acknowledgements."""
    from aiokafka import AIOKafkaProducer

    n, value = p["produce_records"], b"x" * p["value_size"]
    producer = AIOKafkaProducer(bootstrap_servers=p["bootstrap"])
    await producer.start()
    try:
        started = time.perf_counter()
        deliveries = [await producer.send(p["produce_topic"], value) for _ in range(n)]
        await asyncio.gather(*deliveries)
        ended = time.perf_counter()
    finally:
        await producer.stop()
    return _produce_result(n, started, ended)


async def raw_send_and_wait_aiokafka(p: Params) -> Result:
    """aiokafka's own ``send_and_wait`` gathered in chunks, as ``send_concurrent_aiokafka``
    gathers ``engine.send``: the raw client used the way engine.send is."""
    from aiokafka import AIOKafkaProducer

    n, value, chunk = p["produce_records"], b"x" * p["value_size"], p["chunk"]
    producer = AIOKafkaProducer(bootstrap_servers=p["bootstrap"])
    await producer.start()
    try:
        started = time.perf_counter()
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            await asyncio.gather(
                *(producer.send_and_wait(p["produce_topic"], value) for _ in range(size))
            )
        ended = time.perf_counter()
    finally:
        await producer.stop()
    return _produce_result(n, started, ended)


async def raw_send_task_aiokafka(p: Params) -> Result:
    """``raw_send_aiokafka`` plus one task per record awaiting its delivery, gathered in
    chunks: what a task per send costs (every gathered coroutine is one), without any
    send waiting behind a full batch."""
    from aiokafka import AIOKafkaProducer

    n, value, chunk = p["produce_records"], b"x" * p["value_size"], p["chunk"]
    producer = AIOKafkaProducer(bootstrap_servers=p["bootstrap"])

    async def delivered(future: Any) -> Any:
        return await future

    await producer.start()
    try:
        started = time.perf_counter()
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            deliveries = [await producer.send(p["produce_topic"], value) for _ in range(size)]
            await asyncio.gather(*(delivered(future) for future in deliveries))
        ended = time.perf_counter()
    finally:
        await producer.stop()
    return _produce_result(n, started, ended)


def _raw_confluent_produce(p: Params, *, reports: bool) -> Result:
    from confluent_kafka import Producer

    n, value, topic = p["produce_records"], b"x" * p["value_size"], p["produce_topic"]
    producer = Producer(
        {
            "bootstrap.servers": p["bootstrap"],
            "linger.ms": 0,
            "batch.size": 16384,
            "acks": 1,
            **p.get("rd_producer_properties", {}),
        }
    )
    producer.list_topics(timeout=10)
    failures: list[Any] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    started = time.perf_counter()
    produce = producer.produce
    for _ in range(n):
        while True:
            try:
                if reports:
                    produce(topic, value, None, -1, on_delivery)
                else:
                    produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()
    ended = time.perf_counter()
    if failures:
        raise RuntimeError(f"{len(failures)} records failed: {failures[0]}")
    return _produce_result(n, started, ended)


def raw_send_confluent(p: Params) -> Result:
    """confluent ``produce()`` every record (polling when the queue is full), then ``flush()``:
    fire and forget, no delivery callbacks (the baseline issue 12's target is set against).

    With the properties kstreams derives from aiokafka's defaults (linger 0,
    16 KiB batches, acks=1), so the ratio measures kstreams, not settings.
    """
    return _raw_confluent_produce(p, reports=False)


def raw_send_confluent_reports(p: Params) -> Result:
    """As ``raw_send_confluent`` with ``on_delivery`` per record: the raw client told each
    record's outcome, as every kstreams send and ``AIOProducer`` are (the cheapest
    callback: it keeps only failures)."""
    return _raw_confluent_produce(p, reports=True)


async def _with_engine(p: Params, backend: str, work: Callable[[Any], Awaitable[int]]) -> Result:
    from kstreams import create_engine

    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    await engine.start()
    try:
        started = time.perf_counter()
        n = await work(engine)
        ended = time.perf_counter()
    finally:
        await engine.stop()
    return _produce_result(n, started, ended)


async def _send_each(p: Params, backend: str) -> Result:
    n, value, topic = p["send_each_records"], b"x" * p["value_size"], p["produce_topic"]

    async def work(engine: Any) -> int:
        for _ in range(n):
            await engine.send(topic, value)
        return n

    return await _with_engine(p, backend, work)


async def _send_concurrent(p: Params, backend: str) -> Result:
    n, value, topic = p["produce_records"], b"x" * p["value_size"], p["produce_topic"]
    chunk = p["chunk"]

    async def work(engine: Any) -> int:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            await asyncio.gather(*(engine.send(topic, value) for _ in range(size)))
        return n

    return await _with_engine(p, backend, work)


async def _send_many(p: Params, backend: str) -> Result:
    from kstreams import BatchEvent

    n, value, topic = p["produce_records"], b"x" * p["value_size"], p["produce_topic"]
    events = [BatchEvent(value=value)] * n

    async def work(engine: Any) -> int:
        return len(await engine.send_many(topic, events))

    return await _with_engine(p, backend, work)


CASES: dict[str, Callable[[Params], Any]] = {
    "raw_aiokafka": raw_aiokafka,
    "raw_confluent": raw_confluent,
    "port_aiokafka": port_aiokafka,
    "port_confluent": port_confluent,
    "ks_aiokafka": ks_aiokafka,
    "ks_confluent": ks_confluent,
    "ks_aiokafka_batch": ks_aiokafka_batch,
    "ks_confluent_batch": ks_confluent_batch,
    "memory_consume": memory_consume,
    "memory_bare_loop": memory_bare_loop,
    "memory_end_to_end": memory_end_to_end,
    "raw_send_aiokafka": raw_send_aiokafka,
    "raw_send_and_wait_aiokafka": raw_send_and_wait_aiokafka,
    "raw_send_task_aiokafka": raw_send_task_aiokafka,
    "raw_send_confluent": raw_send_confluent,
    "raw_send_confluent_reports": raw_send_confluent_reports,
    "send_each_aiokafka": lambda p: _send_each(p, "aiokafka"),
    "send_each_confluent": lambda p: _send_each(p, "confluent"),
    "send_concurrent_aiokafka": lambda p: _send_concurrent(p, "aiokafka"),
    "send_concurrent_confluent": lambda p: _send_concurrent(p, "confluent"),
    "send_many_aiokafka": lambda p: _send_many(p, "aiokafka"),
    "send_many_confluent": lambda p: _send_many(p, "confluent"),
}


def main() -> None:
    case, params = sys.argv[1], json.loads(sys.argv[2])
    CONFLUENT_EXTRA.update(params.get("confluent_extra") or {})
    # The case modules import this file as ``cases``, a second copy of ``__main__``.
    sys.modules.setdefault("cases", sys.modules[__name__])
    import concurrency_cases
    import eos_cases
    import lag_rss_cases
    import profile_cases

    if case.startswith("conc_"):
        outcome = concurrency_cases.run(case, params)
    else:
        outcome = {**CASES, **lag_rss_cases.CASES, **profile_cases.CASES, **eos_cases.CASES}[case](
            params
        )
    if asyncio.iscoroutine(outcome):
        outcome = asyncio.run(outcome)
    outcome["pid"] = os.getpid()
    if "kstreams" in sys.modules:
        # Which sources ran: the project's, or a --baseline's.
        outcome["kstreams_from"] = os.path.dirname(sys.modules["kstreams"].__file__ or "")
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
