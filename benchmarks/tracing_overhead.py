"""What OpenTelemetry tracing costs per record, on the memory backend.

    python benchmarks/tracing_overhead.py [--records 50000] [--reps 3]

Four configurations, each producing N records with ``send_many`` (1,000 per
call), then consuming them with a typed no-op handler, each phase timed alone
(the consuming phase includes the group join, a few ms on memory):

* ``plain``: an engine never instrumented (the default: tracing costs nothing
  because nothing is imported or wrapped);
* ``api-noop``: ``instrument(engine)`` with the API's no-op tracer provider;
* ``sdk``: an SDK ``TracerProvider`` with no span processor;
* ``sdk+export``: an SDK provider exporting to an in-memory exporter.

Each configuration runs in a fresh process, repetitions interleaved; the
median records/s is printed. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = ("plain", "api-noop", "sdk", "sdk+export")


def _provider(config: str) -> Any:
    if not config.startswith("sdk"):
        return None  # the API's global provider: a no-op until an SDK is installed
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    if config == "sdk+export":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return provider


async def measure(config: str, records: int) -> dict[str, float]:
    """Produce ``records`` with one engine, then consume them with another: each timed alone."""
    from kstreams import BatchEvent, ConsumerRecord, create_engine
    from kstreams.backends import Memory
    from kstreams.backends.memory import MemoryCluster

    cluster = MemoryCluster()
    producer = create_engine(backend=Memory(cluster=cluster))
    consumer = create_engine(backend=Memory(cluster=cluster))
    done = asyncio.Event()
    seen = 0

    @consumer.stream("bench", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal seen
        seen += 1
        if seen == records:
            done.set()

    if config != "plain":
        from kstreams.opentelemetry import instrument

        provider = _provider(config)
        instrument(producer, tracer_provider=provider)
        instrument(consumer, tracer_provider=provider)

    events = [BatchEvent(value=b"x" * 100, key=str(i).encode()) for i in range(records)]
    await producer.start()
    try:
        began = time.perf_counter()
        for start in range(0, records, 1000):
            await producer.send_many("bench", events[start : start + 1000])
        produced = time.perf_counter() - began
    finally:
        await producer.stop()
    began = time.perf_counter()
    await consumer.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
        consumed = time.perf_counter() - began
    finally:
        await consumer.stop()
    return {"produce": records / produced, "consume": records / consumed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--case", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(asyncio.run(measure(args.case, args.records))))
        return
    results: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    for _ in range(args.reps):
        for config in CONFIGS:
            out = subprocess.run(
                [sys.executable, __file__, "--case", config, "--records", str(args.records)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[config].append(json.loads(out))
    print(f"{'config':<12} {'send_many rec/s':>16} {'consume rec/s':>14}")
    for config, runs in results.items():
        produce = statistics.median(r["produce"] for r in runs)
        consume = statistics.median(r["consume"] for r in runs)
        print(f"{config:<12} {produce:>16,.0f} {consume:>14,.0f}")


if __name__ == "__main__":
    main()
