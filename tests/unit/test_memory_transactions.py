"""Kafka transactions on the memory backend: markers, isolation, atomic commit, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from kstreams.backends.memory import MemoryCluster, MemoryConsumer, MemoryProducer
from kstreams.exceptions import (
    CommitFailedError,
    ConfigError,
    IllegalOperationError,
    IllegalStateError,
    ProducerFencedError,
)
from kstreams.ports import GroupMetadata, TransactionalConsumerPort, TransactionalProducerPort
from kstreams.records import TopicPartition

IN, OUT = TopicPartition("in", 0), TopicPartition("out", 0)

Start = Callable[..., Awaitable[Any]]


@pytest.fixture
def cluster() -> MemoryCluster:
    cluster = MemoryCluster()
    cluster.create_topic("in", 1)
    cluster.create_topic("out", 1)
    return cluster


@pytest.fixture
async def start(cluster: MemoryCluster) -> AsyncIterator[Start]:
    """Starts producers (``transactional_id=...``) and consumers (``topics=[...]``); stops all."""
    async with AsyncExitStack() as stack:

        async def make(*, topics: list[str] | None = None, **options: Any) -> Any:
            port: MemoryConsumer | MemoryProducer
            if topics is None:
                port = MemoryProducer(cluster, **options)
            else:
                options.setdefault("auto_offset_reset", "earliest")
                port = MemoryConsumer(cluster, **options)
                port.subscribe(topics)
            stack.push_async_callback(port.stop)
            await port.start()
            return port

        yield make


async def drain(consumer: MemoryConsumer, timeout_ms: int = 20) -> list[bytes | None]:
    """Every value the consumer can fetch now, in order."""
    values: list[bytes | None] = []
    while batch := await consumer.getmany(timeout_ms=timeout_ms):
        values += [r.value for records in batch.values() for r in records]
    return values


async def committed_reader(start: Start, topic: str = "out") -> MemoryConsumer:
    reader: MemoryConsumer = await start(topics=[topic], isolation_level="read_committed")
    return reader


def test_the_memory_ports_are_transactional_ports(cluster: MemoryCluster) -> None:
    """MemoryProducer and MemoryConsumer satisfy the transactional port Protocols."""
    producer: TransactionalProducerPort = MemoryProducer(cluster, transactional_id="t")
    consumer: TransactionalConsumerPort = MemoryConsumer(cluster, group_id="g")
    assert producer is not None
    assert consumer is not None


async def test_abort_hides_the_output_from_read_committed_only(
    start: Start, cluster: MemoryCluster
) -> None:
    """Aborted records stay in the log: read_uncommitted sees them, read_committed never."""
    producer = await start(transactional_id="copier")
    await producer.begin_transaction()
    await producer.send("out", b"a")
    await producer.send("out", b"b")
    await producer.abort_transaction()
    await producer.begin_transaction()
    await producer.send("out", b"c")
    await producer.commit_transaction()

    assert await drain(await committed_reader(start)) == [b"c"]
    assert await drain(await start(topics=["out"])) == [b"a", b"b", b"c"]
    # a, b, abort marker, c, commit marker: each marker takes an offset.
    assert cluster.end_offset(OUT) == 5
    assert cluster.last_stable_offset(OUT) == 5
    assert [r.offset for r in cluster.records(OUT)] == [0, 1, 3]


async def test_commit_makes_output_and_offsets_visible_in_one_step(
    start: Start, cluster: MemoryCluster
) -> None:
    """Sampled at every loop turn, output and committed offset are both old or both new."""
    for i in range(3):
        cluster.append("in", b"%d" % i)
    member: MemoryConsumer = await start(topics=["in"], group_id="g")
    producer = await start(transactional_id="copier")
    reader = await committed_reader(start)
    samples: set[tuple[int, int | None]] = set()
    done = asyncio.Event()

    async def observe() -> None:
        while not done.is_set():
            seen = sum(len(rs) for rs in (await reader.getmany(timeout_ms=0)).values())
            counted = seen + max((v for v, _ in samples), default=0)
            samples.add((counted, cluster.committed("g", IN)))
            await asyncio.sleep(0)

    observer = asyncio.create_task(observe())
    records = (await member.getmany(timeout_ms=100))[IN]
    await producer.begin_transaction()
    for record in records:
        await producer.send("out", record.value)
        await asyncio.sleep(0)
    await producer.send_offsets_to_transaction({IN: 3}, member.group_metadata())
    await asyncio.sleep(0)
    assert cluster.committed("g", IN) is None
    await producer.commit_transaction()
    for _ in range(3):
        await asyncio.sleep(0)
    done.set()
    await observer
    assert samples <= {(0, None), (3, 3)}
    assert (3, 3) in samples


async def test_read_committed_stops_at_the_last_stable_offset(
    start: Start, cluster: MemoryCluster
) -> None:
    """A record written after an open transaction began is held back from read_committed until
    the transaction ends; read_uncommitted gets it at once."""
    producer = await start(transactional_id="slow")
    await producer.begin_transaction()
    await producer.send("out", b"in-txn")
    cluster.append("out", b"plain")
    committed, uncommitted = await committed_reader(start), await start(topics=["out"])
    assert await drain(uncommitted) == [b"in-txn", b"plain"]
    assert await drain(committed) == []
    assert cluster.last_stable_offset(OUT) == 0
    assert await committed.end_offsets([OUT]) == {OUT: 0}
    assert await uncommitted.end_offsets([OUT]) == {OUT: 2}

    waiting = asyncio.create_task(committed.getmany(timeout_ms=5000))
    await asyncio.sleep(0)
    await producer.commit_transaction()
    batch = await asyncio.wait_for(waiting, 5)
    assert [r.value for r in batch[OUT]] == [b"in-txn", b"plain"]
    assert await committed.end_offsets([OUT]) == {OUT: 3}
    assert committed.highwater(OUT) == 3


async def test_latest_and_seek_to_end_mean_the_last_stable_offset_under_read_committed(
    start: Start, cluster: MemoryCluster
) -> None:
    """auto_offset_reset="latest" and seek_to_end land on the LSO, not past an open
    transaction, so its records are read once it commits."""
    cluster.append("out", b"old")
    producer = await start(transactional_id="t")
    await producer.begin_transaction()
    await producer.send("out", b"new")
    reader: MemoryConsumer = await start(
        topics=["out"], isolation_level="read_committed", auto_offset_reset="latest"
    )
    assert await reader.position(OUT) == 1
    await reader.seek_to_end(OUT)
    assert await reader.position(OUT) == 1
    await producer.commit_transaction()
    assert await drain(reader) == [b"new"]


async def test_a_new_producer_with_the_same_id_fences_the_old_one(
    start: Start, cluster: MemoryCluster
) -> None:
    """init (start) with a taken transactional_id aborts the old producer's open transaction,
    and every later call of the old producer raises ProducerFencedError."""
    zombie = await start(transactional_id="copier")
    await zombie.begin_transaction()
    await zombie.send("out", b"zombie")
    successor = await start(transactional_id="copier")
    assert cluster.last_stable_offset(OUT) == cluster.end_offset(OUT) == 2
    with pytest.raises(ProducerFencedError, match="copier"):
        await zombie.send("out", b"late")
    with pytest.raises(ProducerFencedError):
        await zombie.commit_transaction()
    with pytest.raises(ProducerFencedError):
        await zombie.begin_transaction()
    await successor.begin_transaction()
    await successor.send("out", b"successor")
    await successor.commit_transaction()
    assert await drain(await committed_reader(start)) == [b"successor"]


async def test_a_stale_group_member_cannot_commit_through_a_transaction(
    start: Start, cluster: MemoryCluster
) -> None:
    """KIP-447: offsets sent with the metadata of an older generation are refused, the
    transaction can only be aborted, and neither its output nor its offsets appear."""
    cluster.create_topic("two", 2)
    first: MemoryConsumer = await start(topics=["two"], group_id="g")
    stale = first.group_metadata()
    second: MemoryConsumer = await start(topics=["two"], group_id="g")
    while not (first.assignment() and second.assignment()):
        await asyncio.gather(first.getmany(timeout_ms=10), second.getmany(timeout_ms=10))
    assert first.group_metadata().generation_id > stale.generation_id

    producer = await start(transactional_id="zombie")
    await producer.begin_transaction()
    await producer.send("out", b"zombie output")
    tp = TopicPartition("two", 0)
    with pytest.raises(CommitFailedError, match="generation"):
        await producer.send_offsets_to_transaction({tp: 1}, stale)
    with pytest.raises(CommitFailedError, match="aborted"):
        await producer.commit_transaction()
    await producer.abort_transaction()
    assert cluster.committed("g", tp) is None
    assert await drain(await committed_reader(start)) == []

    await producer.begin_transaction()
    await producer.send_offsets_to_transaction({tp: 1}, first.group_metadata())
    await producer.commit_transaction()
    assert cluster.committed("g", tp) == 1


async def test_unknown_member_metadata_is_refused(start: Start) -> None:
    """Offsets for a member that never joined the group are refused with CommitFailedError."""
    producer = await start(transactional_id="t")
    await producer.begin_transaction()
    with pytest.raises(CommitFailedError):
        await producer.send_offsets_to_transaction({IN: 1}, GroupMetadata("nobody", 1, "m-1"))


async def test_rewind_after_abort_copies_every_input_exactly_once(
    start: Start, cluster: MemoryCluster
) -> None:
    """A copier aborts mid-way, rewinds to the committed offset and copies again: a
    read_committed reader sees every input once, the aborted attempt not at all."""
    for i in range(4):
        cluster.append("in", b"%d" % i)
    member: MemoryConsumer = await start(topics=["in"], group_id="g", max_poll_records=2)
    producer = await start(transactional_id="copier")
    failed_once = False
    while (await member.position(IN)) < 4:
        batch = await member.getmany(timeout_ms=100)
        records = batch.get(IN, [])
        if not records:
            continue
        await producer.begin_transaction()
        for record in records:
            await producer.send("out", record.value)
        if records[0].offset == 2 and not failed_once:
            failed_once = True
            await producer.abort_transaction()
            committed = await member.committed(IN)
            member.seek(IN, 0 if committed is None else committed)
            continue
        await producer.send_offsets_to_transaction(
            {IN: records[-1].offset + 1}, member.group_metadata()
        )
        await producer.commit_transaction()
    assert failed_once
    assert cluster.committed("g", IN) == 4
    assert await drain(await committed_reader(start)) == [b"0", b"1", b"2", b"3"]
    assert await drain(await start(topics=["out"])) == [b"0", b"1", b"2", b"3", b"2", b"3"]


async def test_commit_marks_every_partition_the_transaction_wrote_to(
    start: Start, cluster: MemoryCluster
) -> None:
    """One transaction over two topics: a marker on each, both visible at commit."""
    producer = await start(transactional_id="t")
    await producer.begin_transaction()
    await producer.send("in", b"x")
    await producer.send("out", b"y")
    assert cluster.last_stable_offset(IN) == cluster.last_stable_offset(OUT) == 0
    await producer.commit_transaction()
    assert cluster.end_offset(IN) == cluster.end_offset(OUT) == 2
    assert await drain(await committed_reader(start, "in")) == [b"x"]
    assert await drain(await committed_reader(start, "out")) == [b"y"]


async def test_an_open_transaction_times_out_aborted_and_its_producer_fenced(
    start: Start, cluster: MemoryCluster
) -> None:
    """After transaction_timeout_ms the cluster aborts the transaction (unblocking the LSO)
    and the producer is fenced."""
    producer = await start(transactional_id="t", transaction_timeout_ms=50)
    await producer.begin_transaction()
    await producer.send("out", b"never")
    cluster.append("out", b"after")
    reader = await committed_reader(start)
    batch = await reader.getmany(timeout_ms=5000)
    assert [r.value for r in batch[OUT]] == [b"after"]
    with pytest.raises(ProducerFencedError):
        await producer.commit_transaction()


async def test_transaction_calls_out_of_order_raise_illegal_state(start: Start) -> None:
    """send/commit/abort/send_offsets without an open transaction, and begin twice, raise
    IllegalStateError."""
    producer = await start(transactional_id="t")
    with pytest.raises(IllegalStateError, match="begin_transaction"):
        await producer.send("out", b"x")
    with pytest.raises(IllegalStateError):
        await producer.commit_transaction()
    with pytest.raises(IllegalStateError):
        await producer.abort_transaction()
    with pytest.raises(IllegalStateError):
        await producer.send_offsets_to_transaction({IN: 0}, GroupMetadata("g", 0, "m"))
    await producer.begin_transaction()
    with pytest.raises(IllegalStateError, match="already"):
        await producer.begin_transaction()


async def test_transactions_need_a_transactional_id_and_a_group(start: Start) -> None:
    """A plain producer's transaction calls raise IllegalOperationError; so does
    group_metadata on a consumer without a group."""
    producer = await start()
    with pytest.raises(IllegalOperationError, match="transactional_id"):
        await producer.begin_transaction()
    consumer: MemoryConsumer = await start(topics=["in"])
    with pytest.raises(IllegalOperationError, match="group_id"):
        consumer.group_metadata()


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda c: MemoryConsumer(c, isolation_level="serializable"), "isolation_level"),
        (lambda c: MemoryProducer(c, transactional_id=""), "transactional_id"),
        (lambda c: MemoryProducer(c, transaction_timeout_ms=0), "transaction_timeout_ms"),
    ],
)
def test_bad_transaction_settings_are_config_errors(
    cluster: MemoryCluster, make: Callable[[MemoryCluster], object], parameter: str
) -> None:
    """Bad isolation_level, transactional_id or transaction_timeout_ms raise ConfigError
    naming the parameter."""
    with pytest.raises(ConfigError, match=parameter):
        make(cluster)
