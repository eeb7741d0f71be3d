"""An exactly-once copier SIGKILLed mid-stream, again and again, on noida-db.

3,000 keyed records on 3 partitions (in CI too: the issue's proof, about 20 s)
are copied by one member at a time; each member is SIGKILLed once it handled
its share, and the next starts at once with the same static
``group_instance_id`` (noida-db never expels a dead member; a static member
replaces it) and the same transactional ids, which abort what the killed one
left open. A last member drains the rest and stops gracefully. The output,
read by a fresh read_committed consumer, holds every input exactly once:
0 lost and 0 duplicated, whatever the members handled twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.brokers import BrokerProcess
from tests.chaos.harness import (
    GRACEFUL_TIMEOUT_S,
    ROOT,
    Figures,
    create_topic,
    full_run,
    keys,
    produce,
    report,
    wait_until,
)
from tests.kafka_reads import committed, read_all

CHAOS_BROKER = "noida"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(600 if full_run() else 150),
]

RECORDS, KILLS = 3_000, 5
PARTITIONS = 3
HANDLE_MS = 2.0
DRAIN_S = 120.0 if full_run() else 60.0


class Copier:
    """One ``kstreams run`` of the exactly-once worker."""

    def __init__(
        self, workdir: Path, n: int, broker: BrokerProcess, backend: str, names: dict[str, str]
    ) -> None:
        self.ledger = workdir / f"c{n}.ledger"
        self.log = workdir / f"c{n}.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "KSTREAMS_BACKEND": backend,
            "KSTREAMS_BOOTSTRAP_SERVERS": broker.bootstrap,
            "CHAOS_TOPIC": names["in"],
            "CHAOS_OUT": names["out"],
            "CHAOS_GROUP": names["group"],
            "CHAOS_LEDGER": str(self.ledger),
            "CHAOS_HANDLE_MS": str(HANDLE_MS),
            "CHAOS_OPTIONS": json.dumps({**broker.group_timings, "group_instance_id": "copier"}),
        }
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kstreams",
                    "run",
                    "tests.chaos.eos_worker:engine",
                    "--graceful-timeout",
                    str(GRACEFUL_TIMEOUT_S),
                    "--log-level",
                    os.environ.get("KSTREAMS_CHAOS_LOG_LEVEL", "WARNING"),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def handled(self) -> int:
        if not self.ledger.exists():
            return 0
        return self.ledger.read_bytes().count(b"\n")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"copier exited with {self.proc.returncode}:\n{self.log.read_text()}"
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_sigkilled_exactly_once_copier_outputs_every_input_once(
    chaos_broker: BrokerProcess, backend: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """KILLS SIGKILLs of an exactly-once copier mid-stream: read with read_committed, the
    output has every input key exactly once (0 lost, 0 duplicated)."""
    topic, group = names
    began = time.monotonic()
    topics = {"in": topic, "out": f"{topic}-out", "group": group}
    create_topic(chaos_broker.bootstrap, topic, partitions=PARTITIONS)
    create_topic(chaos_broker.bootstrap, topics["out"], partitions=1)
    all_keys = keys(0, RECORDS)
    produce(chaos_broker.bootstrap, topic, all_keys)
    copiers: list[Copier] = []
    handled_before_kill: list[int] = []
    try:
        for n in range(KILLS):
            copier = Copier(tmp_path, n, chaos_broker, backend, topics)
            copiers.append(copier)
            # Each is killed once it handled a share of its own: mid-stream, with
            # transactions open and some of its work committed.
            share = RECORDS // (KILLS + 2)

            def far_enough(c: Copier = copier, s: int = share) -> bool:
                c.check_alive()
                return c.handled() >= s

            wait_until(far_enough, f"copier {n} handling {share} records", DRAIN_S)
            handled_before_kill.append(copier.handled())
            copier.kill()
        last = Copier(tmp_path, KILLS, chaos_broker, backend, topics)
        copiers.append(last)

        def drained() -> bool:
            last.check_alive()
            return sum(asyncio.run(committed(chaos_broker.bootstrap, group)).values()) >= RECORDS

        wait_until(
            drained,
            "the last copier committing every input",
            DRAIN_S,
            lambda: (
                f"handled {[c.handled() for c in copiers]}; last log: "
                f"{last.log.read_text()[-3000:]}"
            ),
            interval_s=0.5,
        )
        last.proc.terminate()
        assert last.proc.wait(timeout=GRACEFUL_TIMEOUT_S + 10) == 0, last.log.read_text()
    finally:
        for copier in copiers:
            copier.kill()
    output = Counter(
        asyncio.run(read_all(chaos_broker.bootstrap, topics["out"], settle_s=2.0, field="key"))
    )
    expected = {key.encode() for key in all_keys}
    lost = len(expected - set(output))
    duplicated = sum(count - 1 for count in output.values())
    handled = sum(c.handled() for c in copiers)
    report(
        Figures(
            scenario=f"exactly-once copier, SIGKILL x{KILLS} (read_committed output)",
            backend=backend,
            runs=KILLS,
            records=RECORDS,
            lost=lost,
            duplicated=duplicated,
            duration_s=time.monotonic() - began,
            notes=f"handled {handled} times in all ({handled - RECORDS} redone after kills)",
        )
    )
    assert len(handled_before_kill) == KILLS
    assert min(handled_before_kill) > 0
    assert set(output) == expected
    assert duplicated == 0
