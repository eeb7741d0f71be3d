"""Error policies on the memory backend: what stops, what restarts, and what is never committed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import kstreams.running
import kstreams.streams
from kstreams import (
    ConsumerRecord,
    RebalanceListener,
    StreamErrorPolicy,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import DeserializationError
from tests.offsets import Offsets
from tests.recording import RecordingBackend

ROOT = Path(__file__).resolve().parents[2]


def filled(topic: str, count: int) -> MemoryCluster:
    cluster = MemoryCluster()
    for i in range(count):
        cluster.append(topic, b"%d" % i)
    return cluster


@pytest.fixture
def fast_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restart back-off of 10 ms doubling to at most 80 ms."""
    monkeypatch.setattr(kstreams.running, "RESTART_BACKOFF_S", (0.01, 0.08))


def record_back_offs(stream: kstreams.streams.Stream) -> list[float]:
    """The RESTART back-offs ``stream`` asks for, each cut to nothing so the test runs fast."""
    delays: list[float] = []
    real_wait = stream.wait_for_stop

    async def recording_wait(timeout_s: float) -> bool:
        delays.append(timeout_s)
        return await real_wait(0)

    stream.wait_for_stop = recording_wait  # type: ignore[method-assign]
    return delays


class ClosedListener(RebalanceListener):
    def __init__(self) -> None:
        super().__init__()
        self.revoked = asyncio.Event()

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.revoked.set()


async def test_stop_stops_only_the_failing_stream() -> None:
    """STOP: the failing stream stops with its error kept; another stream of the engine goes on."""
    cluster = filled("bad", 3)
    engine = create_engine(backend=Memory(cluster=cluster))
    failed = asyncio.Event()
    healthy: list[bytes] = []
    got_healthy = asyncio.Event()
    closed = ClosedListener()

    @engine.stream("bad", group_id="g", auto_offset_reset="earliest", rebalance_listener=closed)
    async def fragile(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            failed.set()
            raise ValueError("boom")

    @engine.stream("good", group_id="g2")
    async def sturdy(cr: ConsumerRecord[bytes, bytes]) -> None:
        healthy.append(cr.value)
        got_healthy.set()

    await engine.start()
    await asyncio.wait_for(failed.wait(), 5)
    await engine.send("good", value=b"still here")
    await asyncio.wait_for(got_healthy.wait(), 5)
    await asyncio.wait_for(closed.revoked.wait(), 5)  # the stream is closing on its own...
    await fragile.stop()  # ...and this joins that stop until it is done
    assert not fragile.running
    assert sturdy.running
    assert engine.started
    await engine.stop()
    assert fragile.error_policy is StreamErrorPolicy.STOP
    assert isinstance(fragile.error, ValueError)
    assert healthy == [b"still here"]
    assert cluster.committed("g", TopicPartition("bad", 0)) == 1


async def test_restart_skips_the_failing_record_and_goes_on(
    fast_restarts: None, caplog: pytest.LogCaptureFixture
) -> None:
    """RESTART (as kpn documents it): a new consumer resumes after the failing record, which
    is skipped, committed past and logged at ERROR with its topic, partition and offset."""
    cluster = filled("t", 5)
    backend = RecordingBackend(Memory(cluster=cluster))
    engine = create_engine(backend=backend)
    attempts = Offsets()

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.RESTART
    )
    async def flaky(cr: ConsumerRecord[bytes, bytes]) -> None:
        attempts.add(cr.offset)
        if cr.offset == 2:
            raise ConnectionError("database away")

    await engine.start()
    await attempts.wait_for(lambda offsets: 4 in offsets)
    await engine.stop()
    assert attempts.offsets == [0, 1, 2, 3, 4]
    assert len(backend.consumers) == 2
    assert isinstance(flaky.error, ConnectionError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 5
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert [r.levelname for r in skipped] == ["ERROR"]
    assert "t[0]@2" in skipped[0].getMessage()


async def test_restart_backs_off_exponentially_and_starts_over_after_a_success() -> None:
    """Failures one after the other restart after 0.1, 0.2, 0.4 s...; once a record is
    handled the next failure waits 0.1 s again."""
    cluster = filled("t", 6)
    engine = create_engine(backend=Memory(cluster=cluster))
    attempts = Offsets()

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.RESTART
    )
    async def flaky(cr: ConsumerRecord[bytes, bytes]) -> None:
        attempts.add(cr.offset)
        if cr.offset in (1, 2, 3, 5):
            raise TimeoutError("slow dependency")

    delays = record_back_offs(flaky)
    await engine.start()
    await attempts.wait_for(lambda offsets: 5 in offsets)
    await engine.stop()
    assert attempts.offsets == [0, 1, 2, 3, 4, 5]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.1])


async def test_restart_back_off_starts_over_for_an_async_for_stream() -> None:
    """An 'async def f(stream)' handler under RESTART: after a record is handled the next
    failure waits the first back-off again (it used to keep doubling)."""
    cluster = filled("t", 6)
    engine = create_engine(backend=Memory(cluster=cluster))
    attempts = Offsets()

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.RESTART
    )
    async def flaky(stream: kstreams.streams.Stream) -> None:
        async for cr in stream:
            attempts.add(cr.offset)
            if cr.offset in (1, 2, 4):
                raise TimeoutError("slow dependency")

    delays = record_back_offs(flaky)
    await engine.start()
    await attempts.wait_for(lambda offsets: 5 in offsets)
    await engine.stop()
    assert attempts.offsets == [0, 1, 2, 3, 4, 5]
    assert delays == pytest.approx([0.1, 0.2, 0.1])


async def test_stop_during_a_restart_back_off_is_prompt() -> None:
    """stop() does not wait for a RESTART back-off to run out; records after the skipped one
    that were not reached stay uncommitted."""
    cluster = filled("t", 3)
    engine = create_engine(backend=Memory(cluster=cluster))
    attempts = Offsets()

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.RESTART
    )
    async def poisoned(cr: ConsumerRecord[bytes, bytes]) -> None:
        attempts.add(cr.offset)
        if cr.offset == 1:
            poisoned.wait_for_stop = slow_wait  # type: ignore[method-assign]
            raise ValueError("poison")

    real_wait = poisoned.wait_for_stop
    waiting = asyncio.Event()

    async def slow_wait(timeout_s: float) -> bool:
        waiting.set()
        return await real_wait(30)

    await engine.start()
    await asyncio.wait_for(waiting.wait(), 5)
    await asyncio.wait_for(engine.stop(), 1)
    assert attempts.offsets == [0, 1]
    assert cluster.committed("g", TopicPartition("t", 0)) == 2


async def test_stop_engine_stops_every_stream_and_the_producer() -> None:
    """STOP_ENGINE: one stream failing stops the whole engine; its record is not committed."""
    cluster = filled("t", 3)
    stopped = asyncio.Event()
    engine = create_engine(backend=Memory(cluster=cluster), after_stop=[stopped.set])

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP_ENGINE,
    )
    async def fatal(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            raise RuntimeError("corrupt state")

    @engine.stream("other", group_id="g2")
    async def bystander(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    await engine.start()
    await asyncio.wait_for(stopped.wait(), 5)
    assert not engine.started
    assert not engine.producer.started
    assert not fatal.running
    assert not bystander.running
    assert isinstance(fatal.error, RuntimeError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 1


@pytest.mark.parametrize("policy", [StreamErrorPolicy.STOP, StreamErrorPolicy.STOP_ENGINE])
async def test_the_failing_record_is_never_committed(policy: StreamErrorPolicy) -> None:
    """Under the stopping policies the group's offset stays at the failing record."""
    cluster = filled("t", 4)
    engine = create_engine(backend=Memory(cluster=cluster))
    attempts = Offsets()

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=policy, name="poisoned"
    )
    async def poisoned(cr: ConsumerRecord[bytes, bytes]) -> None:
        attempts.add(cr.offset)
        if cr.offset == 2:
            raise ValueError("poison")

    await engine.start()
    await attempts.wait_for(lambda offsets: offsets.count(2) == 1)
    await engine.stop()
    assert 3 not in attempts.offsets
    assert cluster.committed("g", TopicPartition("t", 0)) == 2


class FailingDecoder:
    """Decodes UTF-8 text; ``failures`` times for a value b"bad", then lets it through."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]:
        if consumer_record.value == b"bad" and self.failures:
            self.failures -= 1
            raise UnicodeDecodeError("utf-8", b"bad", 0, 1, "not text")
        return dataclasses.replace(consumer_record, value=consumer_record.value.decode())


async def test_a_deserialization_failure_follows_the_stop_policy() -> None:
    """A record that cannot be deserialized stops the stream with DeserializationError and
    stays uncommitted."""
    cluster = MemoryCluster()
    for value in (b"a", b"bad", b"c"):
        cluster.append("t", value)
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=FailingDecoder(99))
    seen: list[str] = []
    closed = ClosedListener()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest", rebalance_listener=closed)
    async def text(cr: ConsumerRecord[bytes, str]) -> None:
        seen.append(cr.value)

    await engine.start()
    await asyncio.wait_for(closed.revoked.wait(), 5)  # the stream closed its consumer
    await engine.stop()
    assert seen == ["a"]
    assert isinstance(text.error, DeserializationError)
    assert "t[0]@1" in str(text.error)
    assert isinstance(text.error.__cause__, UnicodeDecodeError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 1


async def test_a_deserialization_failure_follows_the_restart_policy(fast_restarts: None) -> None:
    """Under RESTART a record that failed to deserialize is skipped like a handler failure."""
    cluster = MemoryCluster()
    for value in (b"a", b"bad", b"c"):
        cluster.append("t", value)
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=FailingDecoder(1))
    attempts = Offsets()
    values: list[str] = []

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest", error_policy=StreamErrorPolicy.RESTART
    )
    async def text(cr: ConsumerRecord[bytes, str]) -> None:
        values.append(cr.value)
        attempts.add(cr.offset)

    await engine.start()
    await attempts.wait_for(lambda offsets: 2 in offsets)
    await engine.stop()
    assert values == ["a", "c"]
    assert isinstance(text.error, DeserializationError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 3


STOP_APPLICATION_SCRIPT = textwrap.dedent(
    """
    import asyncio, signal, sys

    from kstreams import ConsumerRecord, StreamErrorPolicy, TopicPartition, create_engine
    from kstreams.backends import Memory
    from kstreams.backends.memory import MemoryCluster

    cluster = MemoryCluster()
    for i in range(3):
        cluster.append("t", b"%d" % i)
    engine = create_engine(
        backend=Memory(cluster=cluster), after_stop=[lambda: print("engine stopped", flush=True)]
    )

    @engine.stream(
        "t", group_id="g", auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP_APPLICATION,
    )
    async def fatal(cr: ConsumerRecord) -> None:
        if cr.offset == 1:
            raise RuntimeError("fatal")

    async def main() -> None:
        terminated = asyncio.Event()
        if sys.argv[1] == "handle":
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGTERM, lambda: (print("SIGTERM", flush=True), terminated.set())
            )
        await engine.start()
        await asyncio.wait_for(terminated.wait(), 10)
        print("committed", cluster.committed("g", TopicPartition("t", 0)), flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["handle", "default"])
def test_stop_application_stops_the_engine_then_terminates_the_process(
    tmp_path: Path, mode: str
) -> None:
    """STOP_APPLICATION: the engine stops (committing what was handled, not the failing record),
    then the process gets SIGTERM: handled by the app, or ending it by default."""
    script = tmp_path / "app.py"
    script.write_text(STOP_APPLICATION_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    lines = result.stdout.splitlines()
    if mode == "handle":
        assert result.returncode == 0, result.stderr
        assert lines == ["engine stopped", "SIGTERM", "committed 1"]
    else:
        assert result.returncode == -signal.SIGTERM, result.stderr
        assert lines == ["engine stopped"]
