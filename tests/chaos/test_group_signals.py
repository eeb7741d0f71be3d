"""Members of a two-member group killed (SIGKILL) or stopped (SIGTERM) mid-stream, over and over.

At least 20,000 keyed records on 6 partitions (1,200 in the quick run) are
produced at a steady rate while a member is signalled each time it has
handled a random share of them since it started, and a new member takes
its place at once. Afterwards the survivors stop gracefully and the first
member, never signalled, drains what is left. Every handled record is in
some member's ledger: none may be missing, and after graceful stops only,
none may be there twice.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
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
    pytest.mark.timeout(900 if full_run() else 90),
]


@dataclass(frozen=True)
class Scale:
    records: int  #: at least this many are produced, at ``per_second``
    signals: int
    handle_ms: float
    per_second: int


# Production paces the run: 5 ms a record lets three members keep up with it.
SCALE = Scale(20_000, 20, 5.0, 300) if full_run() else Scale(1_200, 3, 5.0, 200)
# Fewer kills than stops in the quick run: each kill waits a session timeout, and
# graceful stops are where a consumer bug shows as a duplicate.
KILLS = SCALE.signals if full_run() else 2
PARTITIONS = 6
STOP_BOUND_S = GRACEFUL_TIMEOUT_S + 10
DRAIN_TIMEOUT_S = 120.0 if full_run() else 40.0


def handled_at_least(member: Member, count: int) -> bool:
    member.check_alive()
    return member.handled() >= count


def under_fire(
    broker: BrokerProcess, backend: str, names: tuple[str, str], workdir: Path, signum: int
) -> tuple[Figures, list[float]]:
    """Run the scenario; its figures and the stop time of every graceful stop."""
    topic, group_id = names
    began = time.monotonic()
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    group = Group(
        workdir,
        backend=backend,
        broker=broker,
        topic=topic,
        group=group_id,
        handle_ms=SCALE.handle_ms,
    )
    rng = random.Random(f"{signum}-{backend}")
    step = SCALE.records // (5 * SCALE.signals)
    signals = KILLS if signum == signal.SIGKILL else SCALE.signals
    # The embedded brokers lose a group whose leader leaves it (docs/chaos.md): the
    # first member to join leads, is never signalled, and is the last one, draining.
    last = group.start()
    members: list[Member] = []
    stops: list[float] = []
    producer: BackgroundProducer | None = None
    try:
        last.wait_assigned()
        members += [group.start(), group.start()]
        # Produced while the signals go on, so that every one lands mid-stream.
        producer = BackgroundProducer(
            broker.bootstrap, topic, per_tick=SCALE.per_second // 10, tick_s=0.1
        )
        for _ in range(signals):
            victim = members.pop(rng.randrange(2))
            # The victim handles a share of the records first: it is mid-stream.
            need = rng.randint(step // 2, step)
            wait_until(
                lambda victim=victim, need=need: handled_at_least(victim, need),
                f"member {victim.name} handling {need} records",
                timeout_s=30,
            )
            if signum == signal.SIGKILL:
                victim.kill()
                # The replacement joins while the group still waits for the dead member.
                members.append(group.start())
                continue
            signalled = time.monotonic()
            victim.terminate()
            # The replacement joins while the victim leaves: the two rebalances overlap.
            members.append(group.start())
            stops.append(victim.wait_stopped(signalled, STOP_BOUND_S))
        wait_until(
            lambda: len(producer.produced) >= SCALE.records,
            f"{SCALE.records} records produced",
            SCALE.records / SCALE.per_second + 30,
        )
        expected = producer.stop()
        for member in members:
            member.wait_assigned()
        signalled = time.monotonic()
        for member in members:
            member.terminate()
        stops += [member.wait_stopped(signalled, STOP_BOUND_S) for member in members]
        wait_until(
            lambda: group.drained_by(last, expected),
            "the last member draining the topic",
            DRAIN_TIMEOUT_S,
            lambda: (
                f"{len(set(expected) - group.seen_keys())} of {len(expected)} unseen; "
                f"events {last.events()[-4:]}; log:\n{last.log.read_text()[-3000:]}"
            ),
            interval_s=LEDGER_POLL_S,
        )
        stops.append(last.stop(STOP_BOUND_S))
    finally:
        if producer is not None:
            producer.stop()
        group.kill_all()
    tally = group.tally(topic, expected)
    scenario = "SIGKILL x{}".format if signum == signal.SIGKILL else "SIGTERM x{}".format
    figures = Figures(
        scenario=scenario(signals),
        backend=backend,
        runs=signals,
        records=len(expected),
        lost=tally.lost,
        duplicated=tally.duplicated,
        max_stop_s=max(stops) if signum == signal.SIGTERM else None,
        duration_s=time.monotonic() - began,
        notes=f"{len(group.members)} members in all",
    )
    report(figures)  # the figures first: a failing run is worth reporting too
    assert tally.lost == 0, f"{tally.lost} records lost, e.g. {tally.lost_keys}"
    return figures, stops


def test_sigkilled_members_lose_nothing(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """SIGKILL of a member mid-stream, again and again: every record is handled at least once."""
    figures, _ = under_fire(chaos_broker, backend, names, tmp_path, signal.SIGKILL)
    assert figures.lost == 0


def test_sigtermed_members_lose_and_repeat_nothing(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """SIGTERM of a member mid-stream, again and again: every record handled exactly once,
    each stop within its bound."""
    figures, stops = under_fire(chaos_broker, backend, names, tmp_path, signal.SIGTERM)
    assert figures.lost == 0
    assert max(stops) < STOP_BOUND_S
    assert figures.duplicated == 0, f"{figures.duplicated} records handled twice"
