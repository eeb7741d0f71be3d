"""Where the time goes: cProfile of the per-record path, and per-record costs of
its pieces without a profiler (``micro``).

Run through ``cases.py`` (see its docstring); the window and helpers are its own.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import threading
import time
from collections.abc import Callable
from typing import Any

from cases import (
    GROUP_OPTIONS,
    Params,
    Result,
    Window,
    _produce_result,
    backend_for,
    typed_counter,
    wait_done,
)

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


def _first(*paths: tuple[str, str]) -> Any:
    """The first of ``(module, attribute)`` that exists: internals move between versions."""
    import importlib

    for module, name in paths:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise LookupError(f"none of {paths}")


def micro(p: Params) -> Result:
    """Per-record costs of pieces of the path, without a broker nor a profiler.

    Uses adapter internals (``_convert_records``, the confluent record builder,
    ``_accept``); a
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
        import inspect

        _convert_records = _first(
            ("kstreams.backends.aiokafka", "_convert_records"),
            ("kstreams.backends.aiokafka.consumer", "_convert_records"),
        )
        # Given (topic, partition, records), or the records alone.
        args = ("bench", 0) if len(inspect.signature(_convert_records).parameters) == 3 else ()
        for _ in range(batches):
            _convert_records(*args, ak_records)
        return batches * batch

    def confluent_record() -> int:
        import inspect

        try:
            _record = _first(
                ("kstreams.backends.confluent", "_record"),
                ("kstreams.backends.confluent.messages", "build_record"),
            )
        except LookupError:
            # Records built a batch at a time, grouped by partition: on the worker in one
            # call (group_records), or grouped there and built on the loop (to_records).
            from kstreams.backends.confluent import messages as built_from

            cache: dict[Any, Any] = {}
            if hasattr(built_from, "to_records"):
                for _ in range(batches):
                    built_from.to_records(built_from.group_messages(messages, cache)[0])
            else:
                group = _first(("kstreams.backends.confluent.messages", "group_records"))
                for _ in range(batches):
                    group(messages, cache)
            return batches * batch

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

    built = [
        ConsumerRecord(r.topic, 0, r.offset, r.timestamp, r.timestamp_type, r.key, r.value)
        for r in ak_records
    ]

    def assign_value() -> int:
        # A deserializer assigning the decoded value, as kpn/kstreams' docs show.
        for _ in range(batches):
            for record in built:
                record.value = value  # type: ignore[misc]
        return batches * batch

    def replace_copy() -> int:
        import dataclasses

        for _ in range(batches):
            for record in built:
                dataclasses.replace(record, value=value)
        return batches * batch

    def deserializer_copy() -> int:
        # The key/value-deserializer path's copy (kstreams.handling), where it exists.
        from kstreams import records

        copy = getattr(records, "copy_record", None)
        if copy is None:
            raise LookupError("no records.copy_record in this build")
        for _ in range(batches):
            for record in built:
                copy(record, value=value)
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
    piece("confluent adapter: our record from a Message", confluent_record)
    piece("confluent adapter _accept (grouping, admit, positions), per record", confluent_accept)
    piece("cr.value = ... on a ConsumerRecord", assign_value)
    piece("dataclasses.replace(cr, value=...)", replace_copy)
    piece("records.copy_record(cr, value=...) (the deserializer path's copy)", deserializer_copy)
    piece("await a no-op coroutine, per record", noop_await)
    return {"records": batches * batch, "rate": 0.0, "costs_us": costs}


CASES = {
    "profile_aiokafka": profile_aiokafka,
    "profile_confluent": profile_confluent,
    "profile_send_many_aiokafka": profile_send_many_aiokafka,
    "profile_send_many_confluent": profile_send_many_confluent,
    "micro": micro,
}
