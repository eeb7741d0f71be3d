"""A chaos-tier group member, run as ``kstreams run tests.chaos.worker:engine``.

Configured by environment variables (the harness in ``tests/chaos/harness.py``
sets them): it consumes ``CHAOS_TOPIC`` as ``CHAOS_GROUP`` and appends one
line per handled record, ``topic partition offset key``, to ``CHAOS_LEDGER``,
written and flushed before the handler returns, so that the harness can count
lost and duplicated records exactly whatever signal ends the process. Every
partition assignment and revocation is appended to ``CHAOS_LEDGER.events``.

``CHAOS_MODE``:

* ``plain`` (default): each record takes ``CHAOS_HANDLE_MS`` milliseconds;
* ``poison``: a record whose value is ``poison`` makes the handler raise, and
  ``DeadLetterMiddleware`` sends it to ``CHAOS_DLQ``;
* ``poison-bytes``: values are JSON, decoded by the engine's deserializer; a
  record that is not JSON must still reach ``CHAOS_DLQ`` (issue 10, defect 11).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from kstreams import (
    ConsumerRecord,
    DeadLetterMiddleware,
    Middleware,
    RebalanceListener,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Confluent

TOPIC = os.environ["CHAOS_TOPIC"]
GROUP = os.environ["CHAOS_GROUP"]
LEDGER = Path(os.environ["CHAOS_LEDGER"])
MODE = os.environ.get("CHAOS_MODE", "plain")
HANDLE_S = float(os.environ.get("CHAOS_HANDLE_MS", "0")) / 1000
DLQ = os.environ.get("CHAOS_DLQ", f"{TOPIC}-dlq")
#: Consumer options as JSON (session timeouts, max_poll_interval_ms, ...).
OPTIONS: dict[str, Any] = json.loads(os.environ.get("CHAOS_OPTIONS", "{}"))

# Line-buffered: every record is one write(2), on disk (page cache) before the
# handler returns, so even SIGKILL cannot lose a line the harness should see.
# Open for the life of the process, closed by its exit (or its SIGKILL).
_ledger: TextIO = LEDGER.open("a", buffering=1)
_events: TextIO = Path(f"{LEDGER}.events").open("a", buffering=1)  # noqa: SIM115


class JsonValues:
    """Decodes each value as JSON: a value that is not JSON is a poison pill."""

    async def deserialize(self, consumer_record: Any, **kwargs: Any) -> Any:
        consumer_record.value = json.loads(consumer_record.value)
        return consumer_record


class EventLog(RebalanceListener):
    """Appends ``<monotonic s> assigned|revoked p,p,...`` per rebalance callback."""

    def _note(self, what: str, tps: frozenset[TopicPartition]) -> None:
        parts = ",".join(str(tp.partition) for tp in sorted(tps, key=lambda tp: tp.partition))
        _events.write(f"{time.monotonic():.3f} {what} {parts}\n")

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self._note("revoked", revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self._note("assigned", assigned)


def record(cr: ConsumerRecord[Any, Any]) -> None:
    key = cr.key.decode() if isinstance(cr.key, bytes) else cr.key
    _ledger.write(f"{cr.topic} {cr.partition} {cr.offset} {key}\n")


backend: Any = None
if os.environ.get("KSTREAMS_BACKEND") == "confluent" and os.environ.get("CHAOS_RDKAFKA_DEBUG"):
    # librdkafka's own protocol trace, for when a scenario fails on confluent only.
    backend = Confluent(extra_config={"debug": os.environ["CHAOS_RDKAFKA_DEBUG"]})
engine = create_engine(
    title=f"chaos-{MODE}",
    backend=backend,
    deserializer=JsonValues() if MODE == "poison-bytes" else None,
)
middlewares = []
if MODE.startswith("poison"):
    middlewares = [Middleware(DeadLetterMiddleware, topic=DLQ, retries=1, backoff_ms=10)]


@engine.stream(
    TOPIC,
    group_id=GROUP,
    auto_offset_reset="earliest",
    rebalance_listener=EventLog(),
    middlewares=middlewares,
    **OPTIONS,
)
async def handle(cr: ConsumerRecord[Any, Any]) -> None:
    if MODE == "poison" and cr.value == b"poison":
        raise ValueError(f"poison pill at {cr.topic}[{cr.partition}]@{cr.offset}")
    if HANDLE_S:
        await asyncio.sleep(HANDLE_S)
    record(cr)
