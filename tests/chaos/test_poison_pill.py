"""A poison pill among good records: it goes to the dead-letter topic, the rest are handled."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.chaos.brokers import BrokerProcess
from tests.chaos.harness import (
    LEDGER_POLL_S,
    Figures,
    Group,
    create_topic,
    events,
    full_run,
    keys,
    produce_batches,
    report,
    wait_until,
)

CHAOS_BROKER = "tansu"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(120 if full_run() else 60),
]

RECORDS = 2_000 if full_run() else 200
DRAIN_S = 30.0


def run_poison(
    broker: BrokerProcess,
    backend: str,
    names: tuple[str, str],
    workdir: Path,
    *,
    mode: str,
    good: bytes | None,
    poison: bytes,
) -> None:
    """Produce ``RECORDS`` records, the middle one ``poison``; check the DLQ and the ledger."""
    topic, group_id = names
    dlq = f"{topic}-dlq"
    began = time.monotonic()
    create_topic(broker.bootstrap, topic, partitions=3)
    create_topic(broker.bootstrap, dlq, partitions=1)
    all_keys = keys(0, RECORDS)
    pill = all_keys[RECORDS // 2]

    def value(key: str) -> bytes:
        if key == pill:
            return poison
        return good if good is not None else json.dumps(key).encode()

    asyncio.run(produce_batches(broker.bootstrap, topic, [events(all_keys, value)]))
    group = Group(workdir, backend=backend, broker=broker, topic=topic, group=group_id)
    # The dead-letter topic is read back by a plain member of another group.
    dead = Group(workdir / "dlq", backend=backend, broker=broker, topic=dlq, group=f"{group_id}-d")
    (workdir / "dlq").mkdir()
    member = group.start(mode=mode)
    reader = dead.start()
    healthy = [key for key in all_keys if key != pill]

    def done() -> bool:
        # A stream stopped by its error policy consumes nothing more: fail now.
        assert "' failed (" not in member.log.read_text(), member.log.read_text()[-3000:]
        return group.drained_by(member, healthy) and dead.drained_by(reader, [pill])

    try:
        wait_until(
            done,
            "the healthy records handled and the pill dead-lettered",
            DRAIN_S,
            lambda: (
                f"{len(set(healthy) - group.seen_keys())} healthy unseen; dead-lettered: "
                f"{sorted(dead.seen_keys())}; log:\n{member.log.read_text()[-3000:]}"
            ),
            interval_s=LEDGER_POLL_S,
        )
        member.stop()
        reader.stop()
    finally:
        group.kill_all()
        dead.kill_all()
    tally = group.tally(topic, healthy)
    assert pill not in group.seen_keys()
    assert dead.tally(dlq, [pill]).handled == 1
    report(
        Figures(
            scenario=f"poison pill ({mode})",
            backend=backend,
            runs=1,
            records=RECORDS,
            lost=tally.lost,
            duplicated=tally.duplicated,
            duration_s=time.monotonic() - began,
            notes="1 record dead-lettered, the others handled",
        )
    )
    assert tally.lost == 0


def test_a_record_the_handler_rejects_is_dead_lettered(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """DeadLetterMiddleware: a record whose handler keeps raising is dead-lettered once,
    every other record is handled."""
    run_poison(
        chaos_broker, backend, names, tmp_path, mode="poison", good=b"fine", poison=b"poison"
    )


def test_a_record_that_cannot_be_deserialized_is_dead_lettered(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """With the engine's deserializer: bytes that are not JSON are dead-lettered, the
    JSON records around them handled."""
    run_poison(
        chaos_broker, backend, names, tmp_path, mode="poison-bytes", good=None, poison=b"\xff{"
    )
