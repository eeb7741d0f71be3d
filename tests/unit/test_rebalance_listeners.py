"""Rebalance listeners and initial offsets on the memory backend."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from kstreams import (
    ConsumerRecord,
    ManualCommitRebalanceListener,
    RebalanceListener,
    StreamEngine,
    TopicPartition,
    TopicPartitionOffset,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster


class Assignments(RebalanceListener):
    """Logs callbacks and lets a test wait for a non-empty assignment."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self.assigned = asyncio.Event()
        self.positions: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))
        self.assigned.clear()

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))
        assert self.stream is not None
        assert self.stream.consumer is not None
        for tp in assigned:
            self.positions[tp] = await self.stream.consumer.position(tp)
        if assigned:
            self.assigned.set()


class ManualCommitAssignments(ManualCommitRebalanceListener, Assignments):
    """Commits before revoke like ManualCommitRebalanceListener, and logs like Assignments."""


class Handled:
    def __init__(self) -> None:
        self.records: list[tuple[int, int]] = []
        self._changed = asyncio.Event()

    def add(self, cr: ConsumerRecord[bytes, bytes]) -> None:
        self.records.append((cr.partition, cr.offset))
        self._changed.set()

    async def wait_for_unique(self, count: int, within: float = 10) -> None:
        async def reached() -> None:
            while len(set(self.records)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), within)


async def test_a_listener_knows_its_stream_and_engine_and_hears_assign_then_revoke() -> None:
    """stream and engine are set before the first callback; assigned on start, revoked on stop."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=2)
    engine = create_engine(backend=Memory(cluster=cluster))
    listener = Assignments()

    @engine.stream("t", group_id="g", rebalance_listener=listener)
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None: ...

    await engine.start()
    await asyncio.wait_for(listener.assigned.wait(), 5)
    await engine.stop()
    both = frozenset({TopicPartition("t", 0), TopicPartition("t", 1)})
    assert [e for e in listener.events if e[1]] == [("assigned", both), ("revoked", both)]
    assert listener.stream is handle
    assert listener.engine is engine


@pytest.mark.parametrize("manual_commit_listener", [True, False])
async def test_manual_commit_listener_commits_before_revoke_so_nothing_is_redelivered(
    manual_commit_listener: bool,
) -> None:
    """With auto-commit off, ManualCommitRebalanceListener commits what a member handled
    before its partitions move, so the new owner reads none of it again; without it, the new
    owner reads the moved partition from the start."""
    cluster = MemoryCluster()
    cluster.create_topic("work", partitions=2)
    for i in range(40):
        cluster.append("work", b"%d" % i, partition=i % 2)
    handled = Handled()
    members: list[StreamEngine] = []
    listeners: list[Assignments] = []
    for name in ("a", "b"):
        engine = create_engine(backend=Memory(cluster=cluster), title=name)
        listener = ManualCommitAssignments() if manual_commit_listener else Assignments()

        @engine.stream(
            "work",
            group_id="workers",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            rebalance_listener=listener,
        )
        async def work(cr: ConsumerRecord[bytes, bytes]) -> None:
            handled.add(cr)

        members.append(engine)
        listeners.append(listener)

    await members[0].start()
    await handled.wait_for_unique(40)
    listeners[0].assigned.clear()
    await members[1].start()
    for listener in listeners:  # both own a partition: the group rebalanced
        await asyncio.wait_for(listener.assigned.wait(), 10)
    assert all(len(assignment) == 1 for assignment in cluster.members("workers").values())
    for i in range(40, 50):
        cluster.append("work", b"%d" % i, partition=i % 2)
    await handled.wait_for_unique(50)
    redelivered = sum(n - 1 for n in Counter(handled.records).values())
    for engine in members:
        await engine.stop()
    if manual_commit_listener:
        # Stopping one member moves partitions once more: still nothing read twice.
        assert sum(n - 1 for n in Counter(handled.records).values()) == 0
        for p in (0, 1):
            assert cluster.committed("workers", TopicPartition("work", p)) == 25
    else:
        # Nothing was committed: the partitions were read again from offset 0.
        assert redelivered >= 20


async def test_initial_offsets_seek_once_on_first_assignment_and_warn_when_not_assigned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each assigned partition starts at its initial offset before the user's listener runs;
    one not assigned is logged; a restart resumes from the commit instead of seeking again."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=2)
    for i in range(10):
        cluster.append("t", b"%d" % i, partition=i % 2)
    engine = create_engine(backend=Memory(cluster=cluster))
    handled = Handled()
    listener = Assignments()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        rebalance_listener=listener,
        initial_offsets=[
            TopicPartitionOffset("t", 0, 3),
            TopicPartitionOffset("t", 1, 1),
            TopicPartitionOffset("t", 7, 0),
        ],
    )
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        handled.add(cr)

    with caplog.at_level(logging.WARNING, logger="kstreams.streams"):
        await engine.start()
        await handled.wait_for_unique(6)
    assert sorted(handled.records) == [(0, 3), (0, 4), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert listener.positions == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "TopicPartition(topic='t', partition=7)" in warnings[0]
    assert "not assigned" in warnings[0]

    await handle.stop()
    cluster.append("t", b"new", partition=0)
    await handle.start()
    await handled.wait_for_unique(7)
    await engine.stop()
    assert handled.records[6:] == [(0, 5)]
    assert len(handled.records) == 7


async def test_manual_commit_listener_never_commits_the_record_that_failed() -> None:
    """When a failing stream closes, the listener commits what was handled before the failure,
    not the failed record (committing 'everything handed out' would lose it)."""
    cluster = MemoryCluster()
    for i in range(3):
        cluster.append("t", b"%d" % i)
    engine = create_engine(backend=Memory(cluster=cluster))
    closed = asyncio.Event()

    class Closing(ManualCommitRebalanceListener):
        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            await super().on_partitions_revoked(revoked)
            if revoked:
                closed.set()

    @engine.stream(
        "t",
        group_id="g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        rebalance_listener=Closing(),
    )
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        if cr.offset == 1:
            raise ValueError("fails")

    await engine.start()
    await asyncio.wait_for(closed.wait(), 5)
    await engine.stop()
    assert isinstance(handle.error, ValueError)
    assert cluster.committed("g", TopicPartition("t", 0)) == 1
