"""Exactly-once streams on the memory backend: outputs and offsets commit together or not at all."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from kstreams import ConsumerRecord, Send, Stream, StreamErrorPolicy, TopicPartition, create_engine
from kstreams.backends import Aiokafka, Confluent, Memory
from kstreams.backends.memory import MemoryCluster, MemoryConsumer, MemoryProducer
from kstreams.engine import StreamEngine
from kstreams.exceptions import ConfigError, StreamError
from kstreams.transactions import transactional_id
from tests.offsets import Offsets

IN = TopicPartition("in", 0)


def filled(count: int) -> MemoryCluster:
    cluster = MemoryCluster()
    cluster.create_topic("out", 1)
    for i in range(count):
        cluster.append("in", b"%d" % i)
    return cluster


def copier(
    cluster: MemoryCluster, progress: Offsets, **options: Any
) -> tuple[StreamEngine, Stream]:
    """An engine whose exactly-once stream copies "in" to "out" as group "copier", noting
    each handled offset in ``progress``."""
    engine = create_engine(backend=Memory(cluster=cluster))

    @engine.stream(
        "in",
        group_id="copier",
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        **options,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send("out", value=cr.value)
        progress.add(cr.offset)

    return engine, copy


async def committed_values(cluster: MemoryCluster, topic: str = "out") -> list[bytes | None]:
    """Everything a read_committed consumer of a fresh group reads from ``topic``."""
    reader = MemoryConsumer(
        cluster, group_id=None, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    reader.subscribe([topic])
    await reader.start()
    try:
        values: list[bytes | None] = []
        while batch := await reader.getmany(timeout_ms=20):
            values += [r.value for records in batch.values() for r in records]
        return values
    finally:
        await reader.stop()


async def test_a_copier_makes_every_input_visible_once_with_its_offsets() -> None:
    """Each input's output is read once by read_committed consumers, and the group's offset
    covers exactly the inputs whose outputs are visible."""
    cluster = filled(30)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Offsets()

    @engine.stream(
        "in", group_id="copier", auto_offset_reset="earliest", processing_guarantee="exactly_once"
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send("out", value=cr.value.upper() + b"!", key=cr.key)
        progress.add(cr.offset)

    await engine.start()
    await progress.wait_for(lambda offsets: len(offsets) == 30)
    await engine.stop()
    assert await committed_values(cluster) == [b"%d!" % i for i in range(30)]
    assert cluster.committed("copier", IN) == 30


async def test_a_failing_handler_aborts_its_transaction_and_commits_nothing_of_it() -> None:
    """STOP: the failing record's transaction is aborted, so neither its outputs nor its
    offsets become visible; what was committed before stays, and the two agree."""
    cluster = filled(10)
    engine = create_engine(backend=Memory(cluster=cluster))

    failed = asyncio.Event()

    @engine.stream(
        "in",
        group_id="copier",
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=60_000,  # one transaction for all of them
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send("out", value=cr.value)
        await engine.send("out", value=b"also " + cr.value)  # the handler's task: same txn
        if cr.offset == 5:
            failed.set()
            raise ValueError("boom")

    await engine.start()
    await asyncio.wait_for(failed.wait(), 5)
    await asyncio.wait_for(copy.stop(), 5)  # joins the stop the STOP policy began
    assert isinstance(copy.error, ValueError)
    assert await committed_values(cluster) == []
    assert cluster.committed("copier", IN) is None
    assert len(cluster.records(TopicPartition("out", 0))) >= 12  # written, then aborted
    await engine.stop()


async def test_restart_skips_the_failing_record_and_replays_the_aborted_others() -> None:
    """RESTART: the aborted transaction's other records are handled again and the failing one
    is skipped, so every other input is visible exactly once."""
    cluster = filled(10)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Offsets()

    @engine.stream(
        "in",
        group_id="copier",
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        error_policy=StreamErrorPolicy.RESTART,
        auto_commit_interval_ms=60_000,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        progress.add(cr.offset)
        if cr.offset == 5:
            raise ValueError("boom")
        await send("out", value=cr.value)

    await engine.start()
    await progress.wait_for(lambda offsets: 9 in offsets, within=10)
    await engine.stop()
    assert progress.offsets == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert await committed_values(cluster) == [b"%d" % i for i in range(10) if i != 5]
    assert cluster.committed("copier", IN) == 10


async def test_a_stop_racing_a_failure_aborts_and_commits_nothing_of_it() -> None:
    """A stop called while the handler fails: the failed transaction is aborted, not
    committed by the stop, and the stop does not wait for itself."""
    cluster = filled(10)
    engine = create_engine(backend=Memory(cluster=cluster))
    failing = asyncio.Event()
    release = asyncio.Event()

    @engine.stream(
        "in",
        group_id="copier",
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=60_000,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send("out", value=cr.value)
        if cr.offset == 5:
            failing.set()
            await release.wait()
            raise ValueError("boom")

    await engine.start()
    await asyncio.wait_for(failing.wait(), 5)
    stopping = asyncio.ensure_future(copy.stop())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert await committed_values(cluster) == []
    assert cluster.committed("copier", IN) is None
    await engine.stop()


async def test_the_transaction_commits_every_interval_while_running() -> None:
    """Outputs become visible while the stream runs, not only at stop."""
    cluster = filled(3)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Offsets()

    @engine.stream(
        "in",
        group_id="copier",
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=1,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await asyncio.sleep(0.005)
        await send("out", value=cr.value)
        progress.add(cr.offset)

    await engine.start()
    await progress.wait_for(lambda offsets: len(offsets) == 3)
    visible = await committed_values(cluster)
    assert visible[:2] == [b"0", b"1"]  # committed after record 1 at the latest
    assert cluster.committed("copier", IN) is not None
    await engine.stop()
    assert await committed_values(cluster) == [b"0", b"1", b"2"]


async def test_an_idle_stream_commits_its_last_transaction_within_the_interval() -> None:
    """With no record coming after the last one, its transaction is still committed once the
    interval is over, without a stop (an idle stream leaves nothing open)."""
    cluster = filled(3)
    progress = Offsets()
    engine, _ = copier(cluster, progress, auto_commit_interval_ms=200)
    await engine.start()
    try:
        await progress.until(3)
        deadline = asyncio.get_running_loop().time() + 5
        while cluster.committed("copier", IN) != 3:
            assert asyncio.get_running_loop().time() < deadline, "never committed while idle"
            await asyncio.sleep(0.02)
        assert await committed_values(cluster) == [b"0", b"1", b"2"]
    finally:
        await engine.stop()


async def test_each_input_partition_has_its_own_stable_transactional_id() -> None:
    """Two input partitions: two producers, with ids {group}.{stream}.{topic}-{partition}
    (or {transactional_id}.{topic}-{partition}); each partition's outputs commit with it."""
    cluster = MemoryCluster()
    cluster.create_topic("in", 2)
    cluster.create_topic("out", 1)
    for i in range(10):
        cluster.append("in", b"%d" % i, partition=i % 2)
    engine = create_engine(backend=Memory(cluster=cluster))
    progress = Offsets()
    ids: set[str] = set()

    @engine.stream(
        "in", group_id="copier", auto_offset_reset="earliest", processing_guarantee="exactly_once"
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send("out", value=cr.value)
        transaction = copy._transaction
        assert transaction is not None
        ids.update(t.transactional_id for t in transaction.partitions.values())
        progress.add(cr.offset)

    await engine.start()
    await progress.until(10)
    await engine.stop()
    assert ids == {"copier.copy.in-0", "copier.copy.in-1"}
    assert sorted(await committed_values(cluster)) == sorted(b"%d" % i for i in range(10))
    assert cluster.committed("copier", TopicPartition("in", 0)) == 5
    assert cluster.committed("copier", TopicPartition("in", 1)) == 5
    named = Stream(
        "in",
        func=copy.func,
        group_id="g",
        processing_guarantee="exactly_once",
        transactional_id="ledger",
    )
    assert transactional_id(named, TopicPartition("in", 1)) == "ledger.in-1"


async def test_a_fenced_stream_rejoins_and_redoes_the_aborted_records_once() -> None:
    """A newer producer takes the partition's id while the stream has a transaction open: the
    stream's commit is refused, it rejoins with a new consumer instead of failing, and every
    input is in the output once."""
    cluster = filled(6)
    progress = Offsets()
    engine, copy = copier(cluster, progress, auto_commit_interval_ms=60_000)
    await engine.start()
    try:
        await progress.until(6)
        fencer = MemoryProducer(cluster, transactional_id=transactional_id(copy, IN))
        await fencer.start()  # a new epoch: the stream's open transaction is aborted
        await fencer.stop()
        cluster.append("in", b"6")  # the next record finds the commit refused
        await progress.wait_for(lambda offsets: offsets.count(6) == 1 and len(offsets) > 7)
        assert copy.running
        assert copy.error is None
    finally:
        await engine.stop()
    assert progress.offsets == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6]
    assert await committed_values(cluster) == [b"%d" % i for i in range(7)]
    assert cluster.committed("copier", IN) == 7


def test_exactly_once_is_checked_at_declaration() -> None:
    """Incompatible combinations and a backend without transactions fail at the decorator."""
    engine = create_engine(backend="memory")
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "a group_id"),
        ({"group_id": "g", "enable_auto_commit": False}, "enable_auto_commit"),
        ({"group_id": "g", "concurrency": 2}, "concurrency=1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(StreamError, match=message):

            @engine.stream("in", processing_guarantee="exactly_once", **kwargs)
            async def handler(cr: ConsumerRecord[Any, Any]) -> None: ...

    with pytest.raises(StreamError, match="typed handler"):

        @engine.stream("in", group_id="g", processing_guarantee="exactly_once")
        async def loop(stream: Stream) -> None: ...

    with pytest.raises(StreamError, match="processing_guarantee must be one of"):

        @engine.stream("in", group_id="g", processing_guarantee="twice")  # type: ignore[arg-type]
        async def twice(cr: ConsumerRecord[Any, Any]) -> None: ...

    other = create_engine(backend=_NoTransactions())
    with pytest.raises(ConfigError, match="the plain backend does not provide"):

        @other.stream("in", group_id="g", processing_guarantee="exactly_once")
        async def elsewhere(cr: ConsumerRecord[Any, Any]) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class _NoTransactions(Memory):
    """A backend whose producers have no transactions."""

    name: str = dataclasses.field(default="plain", init=False)


def test_every_backend_of_the_package_has_transactions() -> None:
    """aiokafka, confluent and memory all accept an exactly-once stream at declaration."""
    backends = [
        Aiokafka(bootstrap_servers="127.0.0.1:1"),
        Confluent(bootstrap_servers="127.0.0.1:1"),
        Memory(),
    ]
    for backend in backends:
        engine = create_engine(backend=backend)

        @engine.stream("in", group_id="g", processing_guarantee="exactly_once")
        async def copy(cr: ConsumerRecord[Any, Any]) -> None: ...

        assert copy.processing_guarantee == "exactly_once"
