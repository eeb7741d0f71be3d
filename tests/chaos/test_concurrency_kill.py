"""Ordered concurrency under SIGKILL: a slow record holds its partition's commit, so after the
kill it and everything after it that finished are handled again, and nothing is lost."""

from __future__ import annotations

import asyncio
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
    read_ledger,
    report,
    wait_until,
)

CHAOS_BROKER = "tansu"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(120 if full_run() else 60),
]

RECORDS = 3_000 if full_run() else 300
DRAIN_S = 30.0
CONCURRENT = {"concurrency": 8, "ordering": "key", "auto_commit_interval_ms": 100}


def test_sigkill_while_a_slow_record_holds_the_prefix_loses_nothing(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """concurrency=8, ordering="key": a member is SIGKILLed while one record never finishes
    and the records after it (other keys) did; the next member handles the slow record and
    again every later record of its partition the first had finished: 0 lost."""
    topic, group_id = names
    began = time.monotonic()
    create_topic(chaos_broker.bootstrap, topic, partitions=3)
    all_keys = keys(0, RECORDS)
    slow = all_keys[RECORDS // 6]
    asyncio.run(
        produce_batches(
            chaos_broker.bootstrap,
            topic,
            [events(all_keys, lambda key: b"slow" if key == slow else key.encode())],
        )
    )
    group = Group(tmp_path, backend=backend, broker=chaos_broker, topic=topic, group=group_id)
    first = group.start(mode="slow-record", options=CONCURRENT)
    others = [key for key in all_keys if key != slow]
    try:
        wait_until(
            lambda: group.drained_by(first, others),
            "every record but the slow one handled",
            DRAIN_S,
            lambda: f"{len(set(others) - group.seen_keys())} unseen",
            interval_s=LEDGER_POLL_S,
        )
        time.sleep(1.0)  # several auto-commit intervals pass with the slow record in flight
        first.kill()
        second = group.start(mode="plain")
        wait_until(
            lambda: group.drained_by(second, all_keys),
            "the slow record handled by the next member",
            DRAIN_S,
            lambda: f"{len(set(all_keys) - group.seen_keys())} unseen",
            interval_s=LEDGER_POLL_S,
        )
        second.stop()
    finally:
        group.kill_all()
    tally = group.tally(topic, all_keys)
    seconds = read_ledger(second.ledger)
    [(_, slow_partition, slow_offset, _)] = [row for row in seconds if row[3] == slow]
    finished_after = {
        offset
        for _, partition, offset, _ in read_ledger(first.ledger)
        if partition == slow_partition and offset > slow_offset
    }
    again = {offset for _, partition, offset, _ in seconds if partition == slow_partition}
    report(
        Figures(
            scenario="SIGKILL, slow record holding the prefix (concurrency=8, key order)",
            backend=backend,
            runs=1,
            records=RECORDS,
            lost=tally.lost,
            duplicated=tally.duplicated,
            duration_s=time.monotonic() - began,
            notes=f"{len(finished_after)} records after the slow one finished before the kill",
        )
    )
    assert tally.lost == 0
    assert finished_after, "the scenario needs records after the slow one to have finished"
    assert finished_after <= again, "the commit passed the unfinished slow record"
