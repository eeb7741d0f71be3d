"""An exactly-once copier for the chaos tier, run as ``kstreams run tests.chaos.eos_worker:engine``.

Consumes ``CHAOS_TOPIC`` as ``CHAOS_GROUP`` with ``processing_guarantee="exactly_once"``
and copies every record (key and value) to ``CHAOS_OUT``. It appends
``partition offset`` to ``CHAOS_LEDGER`` per handled record, only so that the
harness sees progress and knows when to kill it: a record handled in a
transaction that was then aborted is in the ledger too. What counts is the
output, read afresh with read_committed. ``CHAOS_OPTIONS`` (JSON) adds stream
options, such as the static ``group_instance_id`` noida-db needs to replace a
SIGKILLed member.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, TextIO

from kstreams import ConsumerRecord, Send, create_engine

TOPIC = os.environ["CHAOS_TOPIC"]
OUT = os.environ["CHAOS_OUT"]
GROUP = os.environ["CHAOS_GROUP"]
HANDLE_S = float(os.environ.get("CHAOS_HANDLE_MS", "0")) / 1000
OPTIONS: dict[str, Any] = json.loads(os.environ.get("CHAOS_OPTIONS", "{}"))

# Line-buffered: one write(2) per record, so a SIGKILL never tears what the harness reads.
_ledger: TextIO = Path(os.environ["CHAOS_LEDGER"]).open("a", buffering=1)  # noqa: SIM115

engine = create_engine(title="chaos-eos")


@engine.stream(
    TOPIC,
    group_id=GROUP,
    auto_offset_reset="earliest",
    processing_guarantee="exactly_once",
    **OPTIONS,
)
async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
    if HANDLE_S:
        await asyncio.sleep(HANDLE_S)
    await send(OUT, value=cr.value, key=cr.key)
    _ledger.write(f"{cr.partition} {cr.offset}\n")
