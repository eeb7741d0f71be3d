"""Rebalance, pause, seek and commit races of issue 11, driven on purpose on the memory backend.

Each interleaving is forced, never waited for: a handler blocks on an event
until the test saw the revoke begin, a fetch is held at the client's door
while the test pauses, a second member joins to force the rebalance. Every
wait is bounded. Members get client ids so the round-robin assignor's order
is known: "member-a" sorts first and gets partition 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import pytest

from kstreams import (
    ConsumerRecord,
    ManualCommitRebalanceListener,
    RebalanceListener,
    Stream,
    StreamEngine,
    TopicPartition,
    create_engine,
)
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import IllegalStateError
from tests.recording import RecordingBackend, RecordingConsumer

P0 = TopicPartition("t", 0)
P1 = TopicPartition("t", 1)
#: The bound of every wait for something that happens at once.
BOUND_S = 5.0
#: rebalance_timeout_ms of a member whose record must outlive a revoke: the
#: revoke gives up waiting for it after half of it (1 s), well before the
#: group drops the member (2 s).
SHORT_REBALANCE_MS = 2000

T = TypeVar("T")
Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]


async def within(awaitable: Awaitable[T], timeout_s: float = BOUND_S) -> T:
    return await asyncio.wait_for(awaitable, timeout_s)


class Member:
    """One engine of the group, with one stream on topic "t" and its recording port."""

    def __init__(
        self, cluster: MemoryCluster, name: str, handler: Handler, topic: str = "t", **options: Any
    ):
        self.backend = RecordingBackend(Memory(cluster=cluster))
        self.engine: StreamEngine = create_engine(backend=self.backend, title=name)
        options.setdefault("auto_offset_reset", "earliest")
        self.stream: Stream = self.engine.stream(
            topic, group_id="g", client_id=f"member-{name}", **options
        )(handler)

    @property
    def port(self) -> RecordingConsumer:
        return self.backend.consumers[-1]


class Group:
    """Members started by a test, stopped (bounded) when it ends, whatever it did."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster
        self.members: list[Member] = []
        self.starting: list[asyncio.Task[None]] = []

    def member(self, name: str, handler: Handler, **options: Any) -> Member:
        member = Member(self.cluster, name, handler, **options)
        self.members.append(member)
        return member

    def start_soon(self, member: Member) -> asyncio.Task[None]:
        """Start ``member`` in the background: it joins while another member is busy."""
        task = asyncio.get_running_loop().create_task(member.engine.start())
        self.starting.append(task)
        return task

    async def __aenter__(self) -> Group:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self.starting:
            if not task.done():
                await asyncio.wait({task}, timeout=BOUND_S)
        for member in reversed(self.members):
            await within(member.engine.stop(), 30)


class Gate:
    """An event a handler awaits (bounded) until the test opens it."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()

    async def wait(self, timeout_s: float = 20.0) -> None:
        self.reached.set()
        # Not wait_for: it swallows a cancellation that arrives once the gate is open,
        # and a cancelled revoke must stay cancelled.
        async with asyncio.timeout(timeout_s):
            await self._open.wait()

    def open(self) -> None:
        self._open.set()


def fill(cluster: MemoryCluster, count: int, partition: int = 0, partitions: int = 1) -> None:
    if "t" not in cluster.topics():
        cluster.create_topic("t", partitions=partitions)
    for i in range(count):
        cluster.append("t", b"%d" % i, partition=partition)


# -- defect 1: nothing of a revoking partition is handed out ----------------


async def test_a_revoking_partition_hands_out_nothing_more_so_each_record_is_handled_once() -> None:
    """Once the record in hand finishes during a revoke, the old owner gets no further record
    of that partition (the new owner handles it, exactly once) and its stream keeps running."""
    cluster = MemoryCluster()
    fill(cluster, 5, partition=1, partitions=2)  # a keeps t[0], t[1] moves to b
    gate = Gate()
    handled: list[tuple[str, int]] = []
    started_while_revoking: list[int] = []
    all_seen = asyncio.Event()

    def note(name: str, cr: ConsumerRecord[bytes, bytes]) -> None:
        handled.append((name, cr.offset))
        if len({offset for _, offset in handled}) == 5:
            all_seen.set()

    async with Group(cluster) as group:

        async def on_a(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 0:
                await gate.wait()
            else:
                revoking = [k for k, tps in a.port.callbacks if P1 in tps]
                if revoking and revoking[-1] == "revoke.start":
                    started_while_revoking.append(cr.offset)
                    # The handler believes t[1] is its own: it pauses it.
                    await within(a.port.wait_for_callback("revoke.end", P1))
                    assert a.stream.consumer is not None
                    a.stream.consumer.pause(P1)
            note("a", cr)

        async def on_b(cr: ConsumerRecord[bytes, bytes]) -> None:
            note("b", cr)

        a = group.member("a", on_a)
        b = group.member("b", on_b)
        await a.engine.start()
        await within(gate.reached.wait())
        group.start_soon(b)
        await within(a.port.wait_for_callback("revoke.start", P1))
        gate.open()
        await within(all_seen.wait())
        await within(a.port.wait_for_callback("revoke.end", P1))
        a_running, a_error = a.stream.running, a.stream.error
    assert started_while_revoking == []
    assert sorted(Counter(offset for _, offset in handled).items()) == [(i, 1) for i in range(5)]
    assert handled[0] == ("a", 0)
    assert a_running
    assert a_error is None


# -- defect 3: a pause during a fetch, then a resume ------------------------


async def test_pause_then_resume_during_a_fetch_leaves_the_partition_fetching() -> None:
    """pause() and resume() while a fetch is under way end with the partition not paused,
    in the consumer and in the client alike, and its next record is handled."""
    cluster = MemoryCluster()
    fill(cluster, 1)
    handled: list[int] = []
    changed = asyncio.Event()
    async with Group(cluster) as group:

        async def on_record(cr: ConsumerRecord[bytes, bytes]) -> None:
            handled.append(cr.offset)
            changed.set()

        a = group.member("a", on_record)
        await a.engine.start()
        await within(changed.wait())
        consumer = a.stream.consumer
        assert consumer is not None
        hold = a.port.hold_next_fetch()
        await within(hold.entered.wait())
        calls = a.port.getmany_calls
        consumer.pause(P0)
        consumer.resume(P0)
        hold.release()
        # The next fetch began: what was asked for during the held one is applied.
        await within(a.port.wait_for_fetches(calls + 1))
        assert consumer.paused() == frozenset()
        assert a.port.paused() == frozenset()
        changed.clear()
        cluster.append("t", b"after", partition=0)
        await within(changed.wait())
    assert handled == [0, 1]


# -- defect 4: a seek or pause inside the handler during a revoke -----------


@pytest.mark.parametrize("action", ["seek", "pause"])
async def test_a_seek_or_pause_in_the_handler_during_a_revoke_does_not_stall_it(
    action: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that seeks or pauses its partition while a revoke waits for its record
    releases the revoke when it returns: no wait for the drain timeout, no false
    "will be redelivered" warning."""
    cluster = MemoryCluster()
    fill(cluster, 3)
    entered = asyncio.Event()
    async with Group(cluster) as group:

        async def on_a(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset != 0:
                return
            entered.set()
            await within(a.port.wait_for_callback("revoke.start", P0))
            consumer = a.stream.consumer
            assert consumer is not None
            if action == "seek":
                consumer.seek(P0, 0)
            else:
                consumer.pause(P0)

        async def on_b(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        # The drain timeout (30 s) is far beyond every bound of this test.
        a = group.member("a", on_a, rebalance_timeout_ms=60_000)
        b = group.member("b", on_b)
        with caplog.at_level(logging.WARNING, logger="kstreams"):
            await a.engine.start()
            await within(entered.wait())
            group.start_soon(b)
            await within(a.port.wait_for_callback("revoke.end", P0))
    assert [r for r in caplog.records if "redelivered" in r.getMessage()] == []


# -- defect 5: manual commits only for owned partitions ---------------------


async def test_commit_of_a_partition_owned_by_another_member_raises_and_moves_nothing() -> None:
    """commit({tp: offset}) for a partition another member owns raises IllegalStateError and
    leaves the owner's committed offset where it is."""
    cluster = MemoryCluster()
    fill(cluster, 0, partitions=2)
    async with Group(cluster) as group:

        async def on_record(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        a = group.member("a", on_record)
        b = group.member("b", on_record, auto_commit_interval_ms=10)
        await a.engine.start()
        await within(b.engine.start())
        await within(a.port.wait_for_callback("assign.end", P0, count=2))
        await within(b.port.wait_for_callback("assign.end", P1))
        fill(cluster, 5, partition=1)
        await within(b.port.wait_for_commit(P1, 5))
        with pytest.raises(IllegalStateError):
            await a.stream.commit({P1: 0})
        assert cluster.committed("g", P1) == 5


async def test_commit_after_the_record_in_hand_lost_its_partition_does_not_rewind_it() -> None:
    """A handler still holding a record whose partition moved (the revoke gave up waiting)
    and then calling commit() commits nothing of that partition: the new owner's committed
    offset does not go back."""
    cluster = MemoryCluster()
    fill(cluster, 5)
    gate = Gate()
    committed = asyncio.Event()
    async with Group(cluster) as group:

        async def on_old(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 0:
                await gate.wait()
                await old.stream.commit()
                committed.set()

        async def on_new(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        # "b" sorts after "a": once "a" joins, t[0] is a's.
        old = group.member(
            "b", on_old, enable_auto_commit=False, rebalance_timeout_ms=SHORT_REBALANCE_MS
        )
        new = group.member("a", on_new, auto_commit_interval_ms=10)
        await old.engine.start()
        await within(gate.reached.wait())
        group.start_soon(new)
        await within(old.port.wait_for_callback("revoke.end", P0))  # after the drain timeout
        await within(new.port.wait_for_commit(P0, 5))
        gate.open()
        await within(committed.wait())
        assert cluster.committed("g", P0) == 5
    assert all(P0 not in offsets for offsets in old.port.commits)


# -- defect 6: memory backend, stop during a revoke; empty first revoke -----


async def test_a_graceful_stop_during_a_revoke_keeps_manual_commit_progress() -> None:
    """With auto-commit off, stopping while the revoke's listener runs lets that listener
    commit what was handled: the progress is not cleared by the stop cutting the revoke short."""
    cluster = MemoryCluster()
    fill(cluster, 3)
    in_listener = Gate()
    all_handled = asyncio.Event()

    class SlowManualCommit(ManualCommitRebalanceListener):
        """Commits on revoke like its base, after the test let it (the first time only)."""

        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            if revoked and not in_listener.reached.is_set():
                await in_listener.wait()
            await super().on_partitions_revoked(revoked)

    async with Group(cluster) as group:

        async def on_a(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 2:
                all_handled.set()

        async def on_b(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        a = group.member("a", on_a, enable_auto_commit=False, rebalance_listener=SlowManualCommit())
        b = group.member("b", on_b, enable_auto_commit=False)
        await a.engine.start()
        await within(all_handled.wait())
        group.start_soon(b)
        await within(in_listener.reached.wait())
        consumer = a.stream.consumer
        assert consumer is not None
        close = consumer.close

        async def close_then_let_the_listener_go() -> None:
            # The stop reached the consumer: only now does the revoke's listener go on.
            in_listener.open()
            await close()

        consumer.close = close_then_let_the_listener_go  # type: ignore[method-assign]
        await within(a.engine.stop(), 20)
        assert cluster.committed("g", P0) == 3


async def test_a_first_join_reports_no_empty_revoke() -> None:
    """A member's first join tells its listener only of its assignment: no revoke of nothing
    before it, one revoke of everything on stop."""
    cluster = MemoryCluster()
    fill(cluster, 0, partitions=2)
    calls: list[tuple[str, frozenset[TopicPartition]]] = []
    assigned = asyncio.Event()

    class Calls(RebalanceListener):
        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            calls.append(("revoked", revoked))

        async def on_partitions_assigned(self, partitions: frozenset[TopicPartition]) -> None:
            calls.append(("assigned", partitions))
            assigned.set()

    async with Group(cluster) as group:

        async def on_a(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        a = group.member("a", on_a, rebalance_listener=Calls())
        await a.engine.start()
        await within(assigned.wait())
    both = frozenset({P0, P1})
    assert calls == [("assigned", both), ("revoked", both)]


# -- defect 7 (suspected): a late release; a deferred pause or seek ---------


async def test_a_late_release_after_the_partition_came_back_does_not_commit_backwards() -> None:
    """A record that finishes after its partition went to another member and came back
    counts for nothing: the member does not commit its stale offset over the one the other
    member committed."""
    cluster = MemoryCluster()
    fill(cluster, 5)
    gate = Gate()
    released = asyncio.Event()
    other_done = asyncio.Event()
    async with Group(cluster) as group:

        async def on_old(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 0 and not gate.reached.is_set():
                await gate.wait()
                released.set()

        async def on_other(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 4:
                other_done.set()

        old = group.member("b", on_old, rebalance_timeout_ms=SHORT_REBALANCE_MS)
        other = group.member("a", on_other)
        await old.engine.start()
        await within(gate.reached.wait())
        group.start_soon(other)
        await within(old.port.wait_for_callback("revoke.end", P0))  # after the drain timeout
        await within(other_done.wait())
        await within(other.engine.stop(), 20)  # commits 5; t[0] goes back to "b"
        assert cluster.committed("g", P0) == 5
        await within(old.port.wait_for_callback("assign.end", P0, count=2))
        gate.open()
        await within(released.wait())
        await within(old.engine.stop(), 20)
    assert cluster.committed("g", P0) == 5
    assert [offsets for offsets in old.port.commits if offsets.get(P0, 5) < 5] == []


@pytest.mark.parametrize("action", ["pause", "seek"])
async def test_a_pause_or_seek_during_a_fetch_that_moves_the_partition_keeps_the_stream_running(
    action: str,
) -> None:
    """A pause or seek asked for while a fetch is under way, when that fetch's rebalance moves
    the partition to another member, is not applied to the partition now someone else's: the
    stream keeps running and both members consume their partitions."""
    # The revoke inside that fetch drops what was asked for its partitions: this held
    # before issue 11 too. The test below is the case that did not.
    cluster = MemoryCluster()
    fill(cluster, 0, partitions=2)
    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    changed = asyncio.Event()
    async with Group(cluster) as group:

        def handler(name: str) -> Handler:
            async def on_record(cr: ConsumerRecord[bytes, bytes]) -> None:
                seen[name].append((cr.partition, cr.offset))
                changed.set()

            return on_record

        a = group.member("a", handler("a"))
        b = group.member("b", handler("b"))
        await a.engine.start()
        await within(a.port.wait_for_callback("assign.end", P1))
        hold = a.port.hold_next_fetch()
        await within(hold.entered.wait())
        calls = a.port.getmany_calls
        consumer = a.stream.consumer
        assert consumer is not None
        if action == "pause":
            consumer.pause(P1)
        else:
            consumer.seek(P1, 0)
        await within(b.engine.start())  # the group now rebalances: t[1] goes to b
        hold.release()
        await within(a.port.wait_for_fetches(calls + 1))
        await within(a.port.wait_for_callback("assign.end", P0, count=2))
        cluster.append("t", b"x", partition=0)
        cluster.append("t", b"y", partition=1)

        async def both_consumed() -> None:
            while not (seen["a"] and seen["b"]):
                changed.clear()
                await changed.wait()

        await within(both_consumed())
        assert a.stream.running
        assert a.stream.error is None
    assert seen == {"a": [(0, 0)], "b": [(1, 0)]}


@pytest.mark.parametrize("action", ["pause", "seek"])
async def test_a_pause_or_seek_while_rejoining_is_refused_at_once_not_applied_later(
    action: str,
) -> None:
    """A handler that pauses or seeks its partition after the revoke gave up on it, while
    the member rejoins and its client still lists the partition (as aiokafka's does), gets
    IllegalStateError from the call; nothing is applied to the partition once it is another
    member's, and the stream keeps running."""
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions=3)
    t0, s0 = TopicPartition("t", 0), TopicPartition("s", 0)
    gate = Gate()
    refused: list[bool] = []
    acted = asyncio.Event()
    got_s0 = asyncio.Event()
    async with Group(cluster) as group:

        async def on_a(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.topic == "s":
                got_s0.set()
                return
            await gate.wait()
            consumer = a.stream.consumer
            assert consumer is not None
            try:
                if action == "pause":
                    consumer.pause(t0)
                else:
                    consumer.seek(t0, 0)
            except IllegalStateError:
                refused.append(True)
            acted.set()

        async def on_b(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        # Round-robin over "t" gives a t[0] and t[2]; once "s" exists, a gets s[0] and t[1].
        pattern = {"topic": "s|t", "subscribe_by_pattern": True}
        a = group.member("a", on_a, rebalance_timeout_ms=SHORT_REBALANCE_MS, **pattern)
        b = group.member("b", on_b, **pattern)
        await a.engine.start()
        await within(b.engine.start())
        await within(a.port.wait_for_callback("assign.end", t0, count=2))
        await within(b.port.wait_for_callback("assign.end", P1))
        cluster.append("t", b"x", partition=0)
        await within(gate.reached.wait())
        b_fetch = b.port.hold_next_fetch()  # b rejoins only once released
        await within(b_fetch.entered.wait())
        a.port.lag_assignment = True
        cluster.create_topic("s", partitions=1)
        await within(a.port.wait_for_callback("revoke.end", t0, count=2))  # after the drain timeout
        assert t0 in a.port.assignment()  # the client's stale view while a rejoins
        gate.open()
        await within(acted.wait())
        b_fetch.release()
        await within(a.port.wait_for_callback("assign.end", s0))
        cluster.append("s", b"y", partition=0)
        try:
            await within(got_s0.wait())
        except TimeoutError:
            pytest.fail(f"stream a stopped: {a.stream.error!r}")
        assert a.stream.running
        assert a.stream.error is None
    assert refused == [True]


# -- defect 11: ownership is the consumer's own record ----------------------


async def test_a_closing_member_never_commits_a_partition_it_lost_whatever_the_client_reports() -> (
    None
):
    """A member whose client still lists a lost partition (as aiokafka's does while the
    member rejoins) and whose last record of it finished late commits nothing of it on
    close: the group is not rewound."""
    cluster = MemoryCluster()
    fill(cluster, 5)
    gate_passed = asyncio.Event()
    async with Group(cluster) as group:

        async def on_old(cr: ConsumerRecord[bytes, bytes]) -> None:
            if cr.offset == 0 and not gate_passed.is_set():
                gate_passed.set()
                # Finishes only once the member is asked to stop.
                await old.stream.wait_for_stop(20)

        async def on_new(cr: ConsumerRecord[bytes, bytes]) -> None: ...

        old = group.member(
            "b", on_old, rebalance_timeout_ms=SHORT_REBALANCE_MS, auto_commit_interval_ms=60_000
        )
        new = group.member("a", on_new, auto_commit_interval_ms=10)
        await old.engine.start()
        old.port.lag_assignment = True
        await within(gate_passed.wait())
        group.start_soon(new)
        await within(old.port.wait_for_callback("revoke.end", P0))  # after the drain timeout
        await within(new.port.wait_for_commit(P0, 5))
        assert old.port.assignment() == frozenset({P0})  # the client's stale view
        await within(old.engine.stop(), 20)
        assert cluster.committed("g", P0) == 5
    assert all(P0 not in offsets for offsets in old.port.commits)
