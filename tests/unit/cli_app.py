"""A service for the CLI tests, configured by environment variables.

It produces ``APP_COUNT`` records to ``APP_TOPIC`` once started, consumes
them as ``APP_GROUP`` (each taking ``APP_DELAY`` seconds), and appends the
offset of each record it finished to ``APP_OUT`` (and the one it is
handling to ``APP_OUT + ".in-hand"``). On the memory backend it
writes the group's committed offset to ``APP_OUT + ".committed"`` once
stopped, since that cluster lives in this process only.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kstreams import ConsumerRecord, create_engine
from kstreams.backends import Memory
from kstreams.records import TopicPartition

TOPIC = os.environ["APP_TOPIC"]
GROUP = os.environ["APP_GROUP"]
OUT = Path(os.environ["APP_OUT"])
COUNT = int(os.environ.get("APP_COUNT", "5"))
DELAY = float(os.environ.get("APP_DELAY", "0"))

timings: dict[str, Any] = {}
if os.environ.get("KSTREAMS_BACKEND") != "memory":
    # A group join takes about half the session timeout on Tansu; other
    # brokers refuse sessions that short, so the test may name its own.
    session_ms = int(os.environ.get("APP_SESSION_TIMEOUT_MS", "1500"))
    timings = {"session_timeout_ms": session_ms, "heartbeat_interval_ms": 300}

engine = create_engine(title="cli-app")


def note(offset: int, *, done: bool) -> None:
    # Tiny local writes: not worth a thread in a test app.
    if done:
        with OUT.open("a") as out:
            out.write(f"{offset}\n")
    else:
        Path(f"{OUT}.in-hand").write_text(str(offset))


@engine.stream(TOPIC, group_id=GROUP, auto_offset_reset="earliest", **timings)
async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
    note(cr.offset, done=False)
    await asyncio.sleep(DELAY)
    note(cr.offset, done=True)


@engine.after_startup
async def produce() -> None:
    for i in range(COUNT):
        await engine.send(TOPIC, value=str(i).encode(), partition=0)


@engine.after_stop
def report_commit() -> None:
    backend = engine.backend
    if isinstance(backend, Memory):
        committed = backend.resolved_cluster().committed(GROUP, TopicPartition(TOPIC, 0))
        Path(f"{OUT}.committed").write_text(str(committed))
