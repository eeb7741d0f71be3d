"""Members join and leave a group every two seconds while records are produced."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.chaos.brokers import BrokerProcess
from tests.chaos.harness import (
    GRACEFUL_TIMEOUT_S,
    LEDGER_POLL_S,
    BackgroundProducer,
    Figures,
    Group,
    Member,
    create_topic,
    full_run,
    report,
    wait_until,
)

CHAOS_BROKER = "tansu"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(300 if full_run() else 60),
]

CHURN_S = 60.0 if full_run() else 4.0
CHANGE_EVERY_S = 2.0
MAX_CHURNING = 3
STOP_BOUND_S = GRACEFUL_TIMEOUT_S + 10


def test_members_joining_and_leaving_lose_nothing(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """A member joins or leaves every 2 s while 200 records/s are produced: none is lost."""
    topic, group_id = names
    began = time.monotonic()
    create_topic(chaos_broker.bootstrap, topic, partitions=6)
    group = Group(tmp_path, backend=backend, broker=chaos_broker, topic=topic, group=group_id)
    rng = random.Random(f"churn-{backend}")
    # The first member leads the group and stays (see test_group_signals).
    first = group.start(handle_ms=1)
    try:
        first.wait_assigned()
    except BaseException:
        group.kill_all()
        raise
    producer = BackgroundProducer(chaos_broker.bootstrap, topic, per_tick=20, tick_s=0.1)
    churning: list[Member] = []
    changes = 0
    stops: list[float] = []
    try:
        deadline = time.monotonic() + CHURN_S
        while time.monotonic() < deadline:
            join = not churning or (len(churning) < MAX_CHURNING and rng.random() < 0.5)
            if join:
                churning.append(group.start(handle_ms=1))
            else:
                leaving = churning.pop(rng.randrange(len(churning)))
                leaving.wait_assigned()  # its signal handlers are in place
                stops.append(leaving.stop(STOP_BOUND_S))
            changes += 1
            time.sleep(CHANGE_EVERY_S)
        produced = producer.stop()
        for member in churning:
            member.wait_assigned()
            stops.append(member.stop(STOP_BOUND_S))
        wait_until(
            lambda: group.drained_by(first, produced),
            "the first member draining the topic",
            60,
            lambda: f"{len(set(produced) - group.seen_keys())} of {len(produced)} unseen",
            interval_s=LEDGER_POLL_S,
        )
        stops.append(first.stop(STOP_BOUND_S))
    finally:
        producer.stop()
        group.kill_all()
    tally = group.tally(topic, produced)
    report(
        Figures(
            scenario=f"churn {CHURN_S:.0f}s",
            backend=backend,
            runs=changes,
            records=len(produced),
            lost=tally.lost,
            duplicated=tally.duplicated,
            max_stop_s=max(stops),
            duration_s=time.monotonic() - began,
            notes=f"{changes} joins/leaves, every leave graceful",
        )
    )
    assert tally.lost == 0, f"{tally.lost} records lost, e.g. {tally.lost_keys}"
