"""Event-loop lag while a stream consumes at full speed, and RSS under a slow handler.

Run through ``cases.py`` (see its docstring); the window and helpers are its own.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from cases import GROUP_OPTIONS, Params, Result, Window, backend_for, typed_counter, wait_done

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


CASES = {
    "lag_confluent": lag_confluent,
    "lag_aiokafka": lag_aiokafka,
    "rss_aiokafka": rss_aiokafka,
    "rss_confluent": rss_confluent,
}
