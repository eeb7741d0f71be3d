"""One benchmark case, run in a fresh process by ``run.py``.

    python benchmarks/cases.py CASE '{"bootstrap": "127.0.0.1:9092", ...}'

Prints one line ``RESULT {json}`` on stdout. Every throughput window runs from
the first record seen to the N-th (group join excluded, reported as
``join_s``: from the start call to the first record).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import resource
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: Group timings of the integration tier: Tansu completes a join in about
#: half of the session timeout. They change nothing on the fetch path.
GROUP_OPTIONS: dict[str, Any] = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}
RD_GROUP_PROPERTIES: dict[str, Any] = {"session.timeout.ms": 1500, "heartbeat.interval.ms": 300}

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


async def memory_consume(p: Params) -> Result:
    """N records appended before the engine starts, through a typed no-op handler."""
    from kstreams import create_engine
    from kstreams.backends import Memory
    from kstreams.backends.memory import MemoryCluster

    n = p["records"]
    cluster = MemoryCluster()
    cluster.create_topic("bench", partitions=3)
    value = b"x" * p["value_size"]
    for i in range(n):
        cluster.append("bench", value, partition=i % 3)
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


def raw_send_confluent(p: Params) -> Result:
    """confluent ``produce()`` every record (polling when the queue is full), then ``flush()``.

    With the properties kstreams derives from aiokafka's defaults (linger 0,
    16 KiB batches, acks=1), so the ratio measures kstreams, not settings.
    """
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
    started = time.perf_counter()
    produce = producer.produce
    for _ in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()
    ended = time.perf_counter()
    return _produce_result(n, started, ended)


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


async def send_each_aiokafka(p: Params) -> Result:
    return await _send_each(p, "aiokafka")


async def send_each_confluent(p: Params) -> Result:
    return await _send_each(p, "confluent")


async def send_concurrent_aiokafka(p: Params) -> Result:
    return await _send_concurrent(p, "aiokafka")


async def send_concurrent_confluent(p: Params) -> Result:
    return await _send_concurrent(p, "confluent")


async def send_many_aiokafka(p: Params) -> Result:
    return await _send_many(p, "aiokafka")


async def send_many_confluent(p: Params) -> Result:
    return await _send_many(p, "confluent")


# -- event-loop lag ------------------------------------------------------------------


async def _lag(p: Params, backend: str) -> Result:
    """A ticker sleeps 1 ms over and over and records how late it wakes, while a
    stream consumes at full speed; only ticks inside the window count."""
    from kstreams import create_engine

    n = p["records"]
    window = Window(n)
    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    engine.stream(p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS)(
        typed_counter(window)
    )
    idle: list[float] = []
    busy: list[float] = []

    async def tick(until: asyncio.Event) -> None:
        sleep, clock = asyncio.sleep, time.perf_counter
        while not until.is_set():
            before = clock()
            await sleep(0.001)
            woke = clock()
            late = woke - before - 0.001
            if window.seen and not window.done.is_set():
                busy.append(late)
            elif not window.seen:
                idle.append(late)

    stop = asyncio.Event()
    ticker = asyncio.get_running_loop().create_task(tick(stop))
    window.restart()
    await engine.start()
    try:
        await wait_done(window, 60)
    finally:
        stop.set()
        await ticker
        await engine.stop()
    return window.result(lag=_quantiles_ms(busy), idle_lag=_quantiles_ms(idle))


async def lag_confluent(p: Params) -> Result:
    return await _lag(p, "confluent")


async def lag_aiokafka(p: Params) -> Result:
    return await _lag(p, "aiokafka")


def _quantiles_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"samples": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "samples": len(ordered),
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


# -- memory under a slow handler -------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _rss_slow(p: Params, backend: str) -> Result:
    """A handler taking ``handler_s`` per record, for ``duration_s`` seconds; RSS is
    sampled every second from a thread, so a busy event loop cannot delay it."""
    from kstreams import ConsumerRecord, create_engine

    per_record_s: float = p["handler_s"]
    duration: float = p["duration_s"]
    # Sleeping ~10 ms at a time keeps the handler's average cost exact without
    # depending on the loop's timer resolution.
    every = max(1, round(0.01 / per_record_s))
    pause = every * per_record_s
    handled = 0
    first = 0.0

    async def slow(cr: ConsumerRecord[Any, Any]) -> None:
        nonlocal handled, first
        handled += 1
        if handled == 1:
            first = time.perf_counter()
            sampling.set()
        if handled % every == 0:
            await asyncio.sleep(pause)

    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    stream = engine.stream(
        p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS
    )(slow)
    sampling = threading.Event()
    finished = threading.Event()
    samples: list[tuple[float, int, int, int]] = []

    def sample() -> None:
        sampling.wait()
        start = time.perf_counter()
        while not finished.wait(max(0.0, start + len(samples) - time.perf_counter())):
            samples.append(
                (time.perf_counter() - start, _status_kb("VmRSS"), handled, _status_kb("VmHWM"))
            )
            if len(samples) > duration:
                return

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    await engine.start()
    try:
        await asyncio.to_thread(sampler.join, duration + 30)
        buffered = stream.consumer.buffered if stream.consumer is not None else None
    finally:
        finished.set()
        sampling.set()
        await engine.stop()
    rss = [kb for _, kb, _, _ in samples]
    quarter = max(1, len(rss) // 4)
    q1, q4 = statistics.fmean(rss[:quarter]), statistics.fmean(rss[-quarter:])
    elapsed = samples[-1][0] if samples else 0.0
    count = samples[-1][2] if samples else handled
    return {
        "records": count,
        "seconds": elapsed,
        "rate": count / elapsed if elapsed else 0.0,
        "handler_us": per_record_s * 1e6,
        "rss_kb": rss,
        "handled": [c for _, _, c, _ in samples],
        # Peak RSS by the end of the first quarter, and at the end: a bounded
        # prefetch reaches its peak early and stays under it.
        "vmhwm_q1_kb": samples[quarter - 1][3] if samples else 0,
        "q1_kb": q1,
        "q4_kb": q4,
        "growth_pct": (q4 - q1) / q1 * 100,
        "vmhwm_kb": _status_kb("VmHWM"),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "buffered_at_end": buffered,
        "ran_out": count >= p["records"],
        "first_record_s": first,
    }


async def rss_aiokafka(p: Params) -> Result:
    return await _rss_slow(p, "aiokafka")


async def rss_confluent(p: Params) -> Result:
    return await _rss_slow(p, "confluent")


# -- profiles of the per-record path -------------------------------------------------------


def _top(stats: pstats.Stats, n_records: int, limit: int) -> list[dict[str, Any]]:
    rows = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        rows.append(
            {
                "function": _short(filename, line, name),
                "calls_per_record": ncalls / n_records,
                "tottime_us_per_record": tottime / n_records * 1e6,
                "cumtime_us_per_record": cumtime / n_records * 1e6,
            }
        )
    rows.sort(key=lambda row: row["tottime_us_per_record"], reverse=True)
    return rows[:limit]


def _short(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    path = filename
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


async def _profile(p: Params, backend: str) -> Result:
    """The typed no-op handler case under cProfile, enabled from the first record to
    the N-th (the confluent worker thread is profiled while it fetches, too)."""
    from kstreams import create_engine

    n = p["records"]
    window = Window(n)
    main = cProfile.Profile()
    worker = cProfile.Profile()
    profiling = threading.Event()
    if backend == "confluent":
        from kstreams.backends import confluent

        fetch = confluent.ConfluentConsumer._fetch

        def profiled_fetch(self: Any, timeout_s: float, limit: int) -> Any:
            if not profiling.is_set():
                return fetch(self, timeout_s, limit)
            worker.enable()
            try:
                return fetch(self, timeout_s, limit)
            finally:
                worker.disable()

        confluent.ConfluentConsumer._fetch = profiled_fetch  # type: ignore[method-assign]

    def begin() -> None:
        profiling.set()
        main.enable()

    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    handler = typed_counter(window, on_first=begin)
    engine.stream(p["topic"], group_id=p["group"], auto_offset_reset="earliest", **GROUP_OPTIONS)(
        handler
    )
    window.restart()
    await engine.start()
    try:
        await wait_done(window, 120)
        main.disable()
        profiling.clear()
    finally:
        await engine.stop()
    result = window.result(main=_top(pstats.Stats(main), n, p["top"]))
    if backend == "confluent":
        result["worker"] = _top(pstats.Stats(worker), n, p["top"])
    return result


async def _profile_send_many(p: Params, backend: str) -> Result:
    """``engine.send_many`` under cProfile; on confluent, the delivery-report thread too."""
    from kstreams import BatchEvent, create_engine

    n, value, topic = p["produce_records"], b"x" * p["value_size"], p["produce_topic"]
    main = cProfile.Profile()
    poller = cProfile.Profile()
    profiling = threading.Event()
    if backend == "confluent":
        from kstreams.backends import confluent

        poll = confluent.ConfluentProducer._poll

        def profiled_poll(self: Any, producer: Any) -> None:
            profiling.wait()
            poller.enable()
            try:
                poll(self, producer)
            finally:
                poller.disable()

        confluent.ConfluentProducer._poll = profiled_poll  # type: ignore[method-assign]

    engine = create_engine(backend=backend_for(backend, p["bootstrap"]))
    events = [BatchEvent(value=value)] * n
    await engine.start()
    try:
        profiling.set()
        main.enable()
        started = time.perf_counter()
        await engine.send_many(topic, events)
        ended = time.perf_counter()
        main.disable()
    finally:
        await engine.stop()
    result = _produce_result(n, started, ended)
    result["main"] = _top(pstats.Stats(main), n, p["top"])
    if backend == "confluent":
        result["poller"] = _top(pstats.Stats(poller), n, p["top"])
    return result


async def profile_send_many_aiokafka(p: Params) -> Result:
    return await _profile_send_many(p, "aiokafka")


async def profile_send_many_confluent(p: Params) -> Result:
    return await _profile_send_many(p, "confluent")


async def profile_aiokafka(p: Params) -> Result:
    return await _profile(p, "aiokafka")


async def profile_confluent(p: Params) -> Result:
    return await _profile(p, "confluent")


def _best_us(run: Callable[[], int], repeat: int = 5) -> float:
    """Microseconds per record of ``run`` (which returns how many it did), best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def micro(p: Params) -> Result:
    """Per-record costs of pieces of the path, without a broker nor a profiler.

    Uses adapter internals (``_convert_records``, ``_record``, ``_accept``); a
    piece whose internals changed is reported as missing instead of failing.
    """
    import aiokafka.structs
    import confluent_kafka

    from kstreams.records import ConsumerRecord

    batch, batches = 500, max(1, p["records"] // 500)
    value = b"x" * p["value_size"]
    costs: dict[str, float | str] = {}

    def piece(name: str, run: Callable[[], int]) -> None:
        try:
            costs[name] = _best_us(run)
        except Exception as exc:
            costs[name] = f"n/a: {exc!r}"

    ak_records = [
        aiokafka.structs.ConsumerRecord("bench", 0, i, 1, 0, None, value, None, -1, 100, ())
        for i in range(batch)
    ]
    messages = [
        confluent_kafka.Message(topic="bench", partition=0, offset=i, value=value, timestamp=(1, 1))
        for i in range(batch)
    ]

    def touch_aiokafka() -> int:
        seen = 0
        for _ in range(batches):
            for _record in ak_records:
                seen += 1
        return seen

    def touch_confluent() -> int:
        seen = 0
        for _ in range(batches):
            for message in messages:
                if message.error() is None:
                    seen += 1
        return seen

    def dataclass_init() -> int:
        for _ in range(batches):
            for r in ak_records:
                ConsumerRecord(
                    r.topic, r.partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value
                )
        return batches * batch

    def aiokafka_convert() -> int:
        from kstreams.backends.aiokafka import _convert_records

        for _ in range(batches):
            _convert_records("bench", 0, ak_records)
        return batches * batch

    def confluent_record() -> int:
        import inspect

        from kstreams.backends.confluent import _record

        # Given the message alone, or the message and its (cached) topic and partition.
        extra = ("bench", 0)[: len(inspect.signature(_record).parameters) - 1]
        for _ in range(batches):
            for message in messages:
                _record(message, *extra)
        return batches * batch

    def confluent_accept() -> int:
        from kstreams.backends.confluent import ConfluentConsumer
        from kstreams.records import TopicPartition

        class Client:
            def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
                return (0, batch)

        consumer = ConfluentConsumer(group_id="micro", bootstrap_servers="localhost:1")
        consumer._client = Client()  # type: ignore[assignment]
        consumer._assignment = frozenset({TopicPartition("bench", 0)})
        for _ in range(batches):
            consumer._accept(messages)  # type: ignore[arg-type]
        return batches * batch

    def noop_await() -> int:
        async def handler(cr: Any) -> None:
            return None

        async def drive() -> None:
            for _ in range(batches):
                for record in ak_records:
                    await handler(record)

        asyncio.run(drive())
        return batches * batch

    piece("raw aiokafka loop touching each record", touch_aiokafka)
    piece("raw confluent loop checking message.error()", touch_confluent)
    piece("ConsumerRecord(topic, ..., value) constructor", dataclass_init)
    piece("aiokafka adapter _convert_records, per record", aiokafka_convert)
    piece("confluent adapter _record(message)", confluent_record)
    piece("confluent adapter _accept (records, admit, positions), per record", confluent_accept)
    piece("await a no-op coroutine, per record", noop_await)
    return {"records": batches * batch, "rate": 0.0, "costs_us": costs}


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
    "memory_end_to_end": memory_end_to_end,
    "raw_send_aiokafka": raw_send_aiokafka,
    "raw_send_confluent": raw_send_confluent,
    "send_each_aiokafka": send_each_aiokafka,
    "send_each_confluent": send_each_confluent,
    "send_concurrent_aiokafka": send_concurrent_aiokafka,
    "send_concurrent_confluent": send_concurrent_confluent,
    "send_many_aiokafka": send_many_aiokafka,
    "send_many_confluent": send_many_confluent,
    "lag_confluent": lag_confluent,
    "lag_aiokafka": lag_aiokafka,
    "rss_aiokafka": rss_aiokafka,
    "rss_confluent": rss_confluent,
    "profile_aiokafka": profile_aiokafka,
    "profile_confluent": profile_confluent,
    "profile_send_many_aiokafka": profile_send_many_aiokafka,
    "profile_send_many_confluent": profile_send_many_confluent,
    "micro": micro,
}


def main() -> None:
    case, params = sys.argv[1], json.loads(sys.argv[2])
    CONFLUENT_EXTRA.update(params.get("confluent_extra") or {})
    # The case modules import this file as ``cases``, a second copy of ``__main__``.
    sys.modules.setdefault("cases", sys.modules[__name__])
    if case.startswith("conc_"):
        import concurrency_cases

        outcome = asyncio.run(concurrency_cases.run(case, params))
    else:
        outcome = CASES[case](params)
    if asyncio.iscoroutine(outcome):
        outcome = asyncio.run(outcome)
    outcome["pid"] = os.getpid()
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
