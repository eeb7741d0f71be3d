"""Group members in subprocesses, their ledgers, and the figures a chaos run reports.

Every wait here is bounded in time and every loop in count: a scenario that
cannot make progress fails with what it saw, it never hangs the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kstreams import BatchEvent, create_engine
from kstreams.backends import Aiokafka
from tests.chaos.brokers import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
WORKER = "tests.chaos.worker:engine"

GRACEFUL_TIMEOUT_S = 10.0


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float,
    detail: Callable[[], str] = str,
    interval_s: float = 0.05,
) -> None:
    """Poll ``condition`` every ``interval_s``; after ``timeout_s``, ``AssertionError``
    naming ``what`` and what ``detail()`` says about the state it was stuck in."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s. {detail()}")
        time.sleep(interval_s)


#: For conditions that read every ledger: cheap enough on a shared machine.
LEDGER_POLL_S = 0.25


class Member:
    """One ``kstreams run`` of the chaos worker; its ledger and log live in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        backend: str,
        broker: BrokerProcess,
        topic: str,
        group: str,
        mode: str = "plain",
        handle_ms: float = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.ledger = workdir / f"{name}.ledger"
        self.events_file = workdir / f"{name}.ledger.events"
        self.log = workdir / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "KSTREAMS_BACKEND": backend,
            "KSTREAMS_BOOTSTRAP_SERVERS": broker.bootstrap,
            "CHAOS_TOPIC": topic,
            "CHAOS_GROUP": group,
            "CHAOS_LEDGER": str(self.ledger),
            "CHAOS_MODE": mode,
            "CHAOS_HANDLE_MS": str(handle_ms),
            "CHAOS_OPTIONS": json.dumps({**broker.group_timings, **(options or {})}),
        }
        with self.log.open("w") as log:
            # A file, not a pipe: a chatty member must never block on a full pipe.
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kstreams",
                    "run",
                    WORKER,
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

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def handled(self) -> int:
        if not self.ledger.exists():
            return 0
        with self.ledger.open("rb") as ledger:
            return sum(1 for _ in ledger)

    def events(self) -> list[tuple[float, str, str]]:
        """``(monotonic s, "assigned" | "revoked", "0,3,5")`` per rebalance callback."""
        if not self.events_file.exists():
            return []
        out = []
        for line in self.events_file.read_text().splitlines():
            stamp, what, *parts = line.split(" ")
            out.append((float(stamp), what, parts[0] if parts else ""))
        return out

    def assignments(self) -> int:
        return sum(1 for _, what, _ in self.events() if what == "assigned")

    def wait_assigned(self, timeout_s: float = 30.0) -> None:
        """Until the member has joined and got partitions (its signal handlers are in place)."""

        def assigned() -> bool:
            self.check_alive()
            return self.assignments() > 0

        wait_until(assigned, f"member {self.name} getting partitions", timeout_s)

    def check_alive(self) -> None:
        if not self.alive:
            raise AssertionError(
                f"member {self.name} exited with {self.proc.returncode}:\n{self.log.read_text()}"
            )

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, started: float, timeout_s: float) -> float:
        """Wait for the exit after a ``terminate()`` at ``started``; the seconds it took.

        A graceful stop must exit 0 within ``timeout_s``; anything else fails.
        """
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"member {self.name} did not stop within {timeout_s:.0f}s of SIGTERM:\n"
                f"{self.log.read_text()}"
            ) from None
        took = time.monotonic() - started
        if code != 0:
            raise AssertionError(f"member {self.name} exited {code}:\n{self.log.read_text()}")
        return took

    def stop(self, timeout_s: float = GRACEFUL_TIMEOUT_S + 10) -> float:
        started = time.monotonic()
        self.terminate()
        return self.wait_stopped(started, timeout_s)


class Group:
    """The members of one consumer group, numbered in start order."""

    def __init__(self, workdir: Path, **member_settings: Any) -> None:
        self.workdir = workdir
        self.settings = member_settings
        self.members: list[Member] = []

    def start(self, **overrides: Any) -> Member:
        member = Member(self.workdir, f"m{len(self.members):03d}", **{**self.settings, **overrides})
        self.members.append(member)
        return member

    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    def stable(self, partitions: int) -> bool:
        """Every live member's last callback is an assignment, and those assignments
        split the ``partitions`` between them: no rebalance is under way."""
        owned: list[str] = []
        for member in self.live():
            events = member.events()
            if not events or events[-1][1] != "assigned":
                return False
            owned += [p for p in events[-1][2].split(",") if p]
        return sorted(owned, key=int) == [str(p) for p in range(partitions)]

    def wait_stable(self, partitions: int, timeout_s: float = 30.0) -> None:
        wait_until(
            lambda: self.stable(partitions),
            "the group settling",
            timeout_s,
            lambda: "; ".join(f"{m.name}: {m.events()[-3:]}" for m in self.live()),
        )

    def kill_all(self) -> None:
        for member in self.members:
            member.kill()

    def tally(self, topic: str, expected_keys: Iterable[str]) -> Tally:
        return Tally.of([m.ledger for m in self.members], topic, expected_keys)

    def drained_by(self, member: Member, record_keys: Iterable[str]) -> bool:
        """Every key in some ledger; fails at once if ``member``, the one draining, died."""
        member.check_alive()
        return self.seen_keys() >= set(record_keys)

    def seen_keys(self) -> set[str]:
        return {key for ledger in self._ledgers() for _, _, _, key in read_ledger(ledger)}

    def _ledgers(self) -> list[Path]:
        return [m.ledger for m in self.members if m.ledger.exists()]


def read_ledger(path: Path) -> list[tuple[str, int, int, str]]:
    """``(topic, partition, offset, key)`` per line; a torn last line (SIGKILL) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 4:
            rows.append((parts[0], int(parts[1]), int(parts[2]), parts[3]))
    return rows


@dataclass
class Tally:
    """What the group handled, against what was produced."""

    records: int
    handled: int
    lost: int
    duplicated: int
    lost_keys: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, ledgers: Iterable[Path], topic: str, expected_keys: Iterable[str]) -> Tally:
        expected = set(expected_keys)
        seen: Counter[tuple[int, int]] = Counter()
        keys: set[str] = set()
        for ledger in ledgers:
            for record_topic, partition, offset, key in read_ledger(ledger):
                if record_topic == topic:
                    seen[(partition, offset)] += 1
                    keys.add(key)
        lost = sorted(expected - keys)
        return cls(
            records=len(expected),
            handled=sum(seen.values()),
            lost=len(lost),
            duplicated=sum(count - 1 for count in seen.values()),
            lost_keys=lost[:20],
        )


# -- the broker side ----------------------------------------------------------------


def keys(start: int, count: int) -> list[str]:
    return [f"k{i:07d}" for i in range(start, start + count)]


async def create_topic_async(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def create_topic(bootstrap: str, topic: str, partitions: int = 6) -> None:
    asyncio.run(create_topic_async(bootstrap, topic, partitions))


async def produce_batches(bootstrap: str, topic: str, batches: Iterable[list[BatchEvent]]) -> None:
    engine = create_engine(title="chaos-producer", backend=Aiokafka(bootstrap_servers=bootstrap))
    await engine.start()
    try:
        for batch in batches:
            await engine.send_many(topic, batch)
    finally:
        await engine.stop()


def events(record_keys: list[str], value: Callable[[str], bytes] | None = None) -> list[BatchEvent]:
    return [
        BatchEvent(key=key.encode(), value=value(key) if value else key.encode())
        for key in record_keys
    ]


def produce(bootstrap: str, topic: str, record_keys: list[str], batch: int = 1000) -> None:
    """Produce one record per key (value = key), acknowledged before this returns."""
    chunks = [events(record_keys[i : i + batch]) for i in range(0, len(record_keys), batch)]
    asyncio.run(produce_batches(bootstrap, topic, chunks))


class BackgroundProducer:
    """Produces ``per_tick`` keyed records every ``tick_s`` from a thread until ``stop()``."""

    def __init__(self, bootstrap: str, topic: str, *, per_tick: int, tick_s: float) -> None:
        self.produced: list[str] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None

        def ticks() -> Iterable[list[BatchEvent]]:
            while not self._stop.is_set():
                batch = keys(len(self.produced), per_tick)
                yield events(batch)
                self.produced.extend(batch)  # acknowledged: send_many returned
                self._stop.wait(tick_s)

        def run() -> None:
            try:
                asyncio.run(produce_batches(bootstrap, topic, ticks()))
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="chaos-producer", daemon=True)
        self._thread.start()

    def stop(self) -> list[str]:
        """Stop producing; the keys of every acknowledged record."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise AssertionError("the background producer did not stop within 30s")
        if self._error is not None:
            raise AssertionError(f"the background producer failed: {self._error!r}")
        return list(self.produced)


# -- figures --------------------------------------------------------------------------


@dataclass
class Figures:
    """One scenario's row in the results."""

    scenario: str
    backend: str
    runs: int
    records: int
    lost: int
    duplicated: int
    max_stop_s: float | None = None
    duration_s: float = 0.0
    notes: str = ""

    def line(self) -> str:
        stop = "-" if self.max_stop_s is None else f"{self.max_stop_s:.2f}"
        return (
            f"{self.scenario} [{self.backend}]: runs={self.runs} records={self.records} "
            f"lost={self.lost} duplicated={self.duplicated} max_stop_s={stop} "
            f"duration_s={self.duration_s:.1f} {self.notes}"
        )


def full_run() -> bool:
    """``KSTREAMS_CHAOS=full`` (``nox -s chaos``): the issue's counts, figures written."""
    return os.environ.get("KSTREAMS_CHAOS", "quick").strip().lower() == "full"


RESULTS_JSON = Path(__file__).with_name("results.json")
RESULTS_MD = Path(__file__).with_name("RESULTS.md")


def report(figures: Figures) -> None:
    """Print the row; in a full run, merge it into ``results.json`` and ``RESULTS.md``."""
    print(figures.line())
    if not full_run():
        return
    rows: dict[str, Any] = {}
    if RESULTS_JSON.exists():
        rows = json.loads(RESULTS_JSON.read_text())
    rows[f"{figures.scenario}/{figures.backend}"] = asdict(figures)
    RESULTS_JSON.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    RESULTS_MD.write_text(render_markdown(rows))


def render_markdown(rows: dict[str, Any]) -> str:
    lines = [
        "# Chaos tier: figures of the last full run",
        "",
        "Written by `nox -s chaos` (`KSTREAMS_CHAOS=full pytest -m chaos`); "
        "see docs/chaos.md for what each scenario does. Durations and stop times "
        "come from a shared machine under load: they bound, they do not benchmark.",
        "",
        "| scenario | backend | runs | records | lost | duplicated | max stop (s) | took (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(rows):
        row = rows[key]
        stop = "-" if row["max_stop_s"] is None else f"{row['max_stop_s']:.2f}"
        lines.append(
            f"| {row['scenario']} | {row['backend']} | {row['runs']} | {row['records']:,} | "
            f"{row['lost']} | {row['duplicated']:,} | {stop} | {row['duration_s']:.0f} |"
        )
    notes = [f"- {rows[k]['scenario']} [{rows[k]['backend']}]: {rows[k]['notes']}" for k in rows]
    notes = [n for n, k in zip(notes, rows, strict=True) if rows[k]["notes"]]
    if notes:
        lines += ["", *sorted(notes)]
    return "\n".join(lines) + "\n"
