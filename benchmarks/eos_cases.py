"""Exactly-once copy against at-least-once copy (issue 16), on noida-db.

Tansu (the run's broker) has no transaction isolation, so each case starts
its own noida-db on a free loopback port, as ``tests/broker.py`` does,
pre-loads the run's record count (at most 20,000) on 3 partitions and copies them with a
typed handler, ``await send(out, value=cr.value, key=cr.key)``: with
``processing_guarantee="exactly_once"`` (one transaction per input
partition, committed every 100 ms) or the default at-least-once (auto-commit
every 5 s). The window runs from the first record handled to the N-th; the
exactly-once case then waits until its last transactions are committed
(``commit_s``), which the window excludes as the join is.

Case names are ``eos_copy_<backend>`` and ``alo_copy_<backend>``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cases import Params, Result, Window, backend_for, wait_done

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3
#: noida-db refuses sessions under 6 s.
GROUP_OPTIONS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
BACKENDS = ("aiokafka", "confluent")
#: Records copied per case: the run's pre-load count, at most this.
MAX_RECORDS = 20_000
NAMES = [f"{kind}_copy_{backend}" for backend in BACKENDS for kind in ("alo", "eos")]


async def _preload(bootstrap: str, topic: str, out: str, n: int, size: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(out, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_000_000)
    await producer.start()
    try:
        value = b"x" * size
        pending = [
            await producer.send(topic, value, key=b"%d" % i, partition=i % PARTITIONS)
            for i in range(n)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def _copy(bootstrap: str, name: str, p: Params) -> Result:
    from kstreams import ConsumerRecord, Send, create_engine

    kind, _, backend = name.split("_")
    n = int(p.get("eos_records") or min(int(p.get("records", MAX_RECORDS)), MAX_RECORDS))
    topic = f"eos-bench-{uuid.uuid4().hex[:8]}"
    out = f"{topic}-out"
    await _preload(bootstrap, topic, out, n, int(p.get("value_size", 100)))
    window = Window(n)
    engine = create_engine(backend=backend_for(backend, bootstrap))
    extra: dict[str, Any] = {"processing_guarantee": "exactly_once"} if kind == "eos" else {}
    group = f"{name}-{uuid.uuid4().hex[:6]}"

    @engine.stream(topic, group_id=group, auto_offset_reset="earliest", **GROUP_OPTIONS, **extra)
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(out, value=cr.value, key=cr.key)
        seen = window.seen + 1
        window.seen = seen
        if seen == 1:
            window.first = time.perf_counter()
        if seen == n:
            window.last = time.perf_counter()
            window.done.set()

    window.restart()
    await engine.start()
    commit_s = None
    try:
        await wait_done(window, 170)
        if kind == "eos":
            began = time.perf_counter()
            while await _committed(bootstrap, group) < n:
                if time.perf_counter() - began > 30:
                    raise RuntimeError("the last transactions were not committed within 30 s")
                await asyncio.sleep(0.05)
            commit_s = time.perf_counter() - began
    finally:
        await engine.stop()
    return window.result(commit_s=commit_s, partitions=PARTITIONS)


async def run(name: str, p: Params) -> Result:
    sys.path.insert(0, str(ROOT))
    from tests.broker import noida_broker

    with noida_broker() as bootstrap:
        return await _copy(bootstrap, name, p)


CASES = {name: (lambda p, name=name: run(name, p)) for name in NAMES}
