"""A handler slower than the poll interval allows: prefetching keeps the members in their group."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.brokers import BrokerProcess
from tests.chaos.harness import (
    LEDGER_POLL_S,
    Figures,
    Group,
    create_topic,
    full_run,
    keys,
    produce,
    report,
    wait_until,
)

CHAOS_BROKER = "tansu"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(300 if full_run() else 60),
]

HANDLE_MS = 50
MAX_POLL_INTERVAL_MS = 3000
# Each member's share takes several poll intervals to handle (records x 50 ms / 2 members).
RECORDS = 1_200 if full_run() else 140


def test_a_slow_handler_causes_no_rebalance(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """50 ms a record with max_poll_interval_ms=3000 and a large buffer: no member is
    thrown out of the group while handling a backlog of many poll intervals; nothing lost."""
    topic, group_id = names
    began = time.monotonic()
    create_topic(chaos_broker.bootstrap, topic, partitions=6)
    group = Group(
        tmp_path,
        backend=backend,
        broker=chaos_broker,
        topic=topic,
        group=group_id,
        handle_ms=HANDLE_MS,
        options={"max_poll_interval_ms": MAX_POLL_INTERVAL_MS, "max_buffered_records": 5000},
    )
    first = group.start()
    try:
        first.wait_assigned()
        members = [first, group.start()]
        group.wait_stable(partitions=6)
        settled = [len(m.events()) for m in members]
        expected = keys(0, RECORDS)
        produce(chaos_broker.bootstrap, topic, expected)
        backlog_s = RECORDS * HANDLE_MS / 1000 / len(members)
        wait_until(
            lambda: group.drained_by(first, expected),
            "the members handling the backlog",
            backlog_s * 3 + 20,
            lambda: f"{len(set(expected) - group.seen_keys())} of {RECORDS} unseen",
            interval_s=LEDGER_POLL_S,
        )
        rebalances = [m.events()[n:] for m, n in zip(members, settled, strict=True)]
        handled_s = time.monotonic() - began
        for member in members:
            member.stop()
    finally:
        group.kill_all()
    tally = group.tally(topic, expected)
    report(
        Figures(
            scenario=f"slow handler {HANDLE_MS} ms, max_poll_interval_ms={MAX_POLL_INTERVAL_MS}",
            backend=backend,
            runs=1,
            records=RECORDS,
            lost=tally.lost,
            duplicated=tally.duplicated,
            duration_s=handled_s,
            notes=f"backlog of {backlog_s:.0f}s a member; rebalances while handling it: "
            f"{sum(map(len, rebalances))}",
        )
    )
    assert tally.lost == 0, f"{tally.lost} records lost, e.g. {tally.lost_keys}"
    assert tally.duplicated == 0
    # The stops above revoke once each; nothing may have moved before them.
    assert rebalances == [[], []], f"rebalanced while handling: {rebalances}"
