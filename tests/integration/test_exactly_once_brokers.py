"""Exactly-once streams on noida-db (a broker with transactions), on aiokafka and confluent.

Tansu is left out: aborted records stay visible to read_committed consumers
there, so nothing of this can be judged on it. Outputs are always read by a
fresh read_committed consumer (noida-db may drop later batches for one kept
running across an abort).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from kstreams import ConsumerRecord, Send, StreamErrorPolicy, TopicPartition, create_engine
from kstreams.backends import Aiokafka, Confluent
from kstreams.engine import StreamEngine
from kstreams.exceptions import ProducerFencedError
from kstreams.ports import TransactionalProducerPort
from kstreams.transactions import transactional_id
from tests.broker import create_topic
from tests.kafka_reads import committed, read_all
from tests.offsets import Offsets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BACKENDS = ["aiokafka", "confluent"]
#: noida-db refuses sessions under 6 s.
TIMINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def engine_for(backend: str, bootstrap: str, **kwargs: Any) -> StreamEngine:
    settings = Aiokafka if backend == "aiokafka" else Confluent
    return create_engine(backend=settings(bootstrap_servers=bootstrap), **kwargs)


async def topics(bootstrap: str, partitions: int = 2) -> tuple[str, str]:
    name = uuid.uuid4().hex[:8]
    source, sink = f"eos-in-{name}", f"eos-out-{name}"
    await create_topic(bootstrap, source, partitions)
    await create_topic(bootstrap, sink, 1)
    return source, sink


async def fill(bootstrap: str, topic: str, count: int, partitions: int = 2) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, b"%d" % i, partition=i % partitions)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_commit_makes_outputs_and_offsets_visible_together(
    backend: str, noida_bootstrap: str
) -> None:
    """Each input's output is read once by read_committed, and the group's offsets cover
    exactly the inputs (every one of them) after the stream stopped; the engine's acks=1
    does not reach the transactional producers."""
    source, sink = await topics(noida_bootstrap)
    await fill(noida_bootstrap, source, 40)
    # acks=1 is the engine's: the transactional producers leave it out.
    engine = engine_for(backend, noida_bootstrap, producer_options={"acks": 1, "linger_ms": 2})
    group = f"g-{uuid.uuid4().hex[:6]}"
    progress = Offsets()

    @engine.stream(
        source,
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        **TIMINGS,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(sink, value=cr.value + b"!")
        progress.add(cr.offset)

    await engine.start()
    try:
        await progress.until(40, within=60)
    finally:
        await engine.stop()
    values = await read_all(noida_bootstrap, sink)
    assert sorted(values) == sorted(b"%d!" % i for i in range(40))
    assert await committed(noida_bootstrap, group) == {
        TopicPartition(source, 0): 20,
        TopicPartition(source, 1): 20,
    }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_abort_hides_the_outputs_from_read_committed(
    backend: str, noida_bootstrap: str
) -> None:
    """STOP after a failure: the aborted outputs are in the log (read_uncommitted sees them)
    but never visible to read_committed, and no offset is committed."""
    source, sink = await topics(noida_bootstrap, partitions=1)
    await fill(noida_bootstrap, source, 10, partitions=1)
    engine = engine_for(backend, noida_bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    failed = asyncio.Event()

    @engine.stream(
        source,
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=60_000,  # one transaction for all of them
        **TIMINGS,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(sink, value=cr.value)
        if cr.offset == 5:
            failed.set()
            raise ValueError("boom")

    await engine.start()
    try:
        await asyncio.wait_for(failed.wait(), 60)
        await asyncio.wait_for(copy.stop(), 30)
    finally:
        await engine.stop()
    assert isinstance(copy.error, ValueError)
    assert await read_all(noida_bootstrap, sink) == []
    assert sorted(await read_all(noida_bootstrap, sink, isolation="read_uncommitted")) == sorted(
        b"%d" % i for i in range(6)
    )
    assert await committed(noida_bootstrap, group) == {}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_restart_rewinds_and_replays_the_aborted_records(
    backend: str, noida_bootstrap: str
) -> None:
    """RESTART: the aborted transaction's records are handled again, the failing one is
    skipped, and every other input's output is visible exactly once."""
    source, sink = await topics(noida_bootstrap, partitions=1)
    await fill(noida_bootstrap, source, 10, partitions=1)
    engine = engine_for(backend, noida_bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    progress = Offsets()

    @engine.stream(
        source,
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        error_policy=StreamErrorPolicy.RESTART,
        auto_commit_interval_ms=60_000,
        **TIMINGS,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        progress.add(cr.offset)
        await send(sink, value=cr.value)
        if cr.offset == 5:
            raise ValueError("boom")

    await engine.start()
    try:
        await progress.wait_for(lambda offsets: 9 in offsets, within=60)
    finally:
        await engine.stop()
    assert progress.offsets == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert await read_all(noida_bootstrap, sink) == [b"%d" % i for i in range(10) if i != 5]
    assert await committed(noida_bootstrap, group) == {TopicPartition(source, 0): 10}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_producer_taking_the_partitions_id_fences_the_stream(
    backend: str, noida_bootstrap: str
) -> None:
    """A newer producer with the partition's transactional id (its next owner) fences the
    stream's: the stream's open transaction is aborted and can never be committed."""
    source, sink = await topics(noida_bootstrap, partitions=1)
    await fill(noida_bootstrap, source, 5, partitions=1)
    engine = engine_for(backend, noida_bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    progress = Offsets()

    @engine.stream(
        source,
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=60_000,
        **TIMINGS,
    )
    async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(sink, value=cr.value)
        progress.add(cr.offset)

    await engine.start()
    successor: Any = None
    try:
        await progress.until(5, within=60)
        txn_id = transactional_id(copy, TopicPartition(source, 0))
        successor = engine.backend.create_producer(
            {"bootstrap_servers": noida_bootstrap, "transactional_id": txn_id}
        )
        await successor.start()
        port: TransactionalProducerPort = successor
        await port.begin_transaction()  # aiokafka registers the id here
        transaction = copy._transaction
        assert transaction is not None
        with pytest.raises(ProducerFencedError):
            await transaction.commit({TopicPartition(source, 0): 5})
        await port.commit_transaction()
    finally:
        await engine.stop()
        if successor is not None:
            await successor.stop()
    assert await read_all(noida_bootstrap, sink) == []
    assert await committed(noida_bootstrap, group) == {}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_zombie_member_that_lost_its_partition_is_fenced(
    backend: str, noida_bootstrap: str
) -> None:
    """A member stuck in its handler with a transaction open is replaced in the group (a new
    member with its static group_instance_id takes the partition): the new owner fences the
    zombie's producer, so its late commit fails and every input is in the output once."""
    source, sink = await topics(noida_bootstrap, partitions=1)
    await fill(noida_bootstrap, source, 10, partitions=1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    static = {**TIMINGS, "group_instance_id": "ledger-1"}
    zombie, successor = engine_for(backend, noida_bootstrap), engine_for(backend, noida_bootstrap)
    stuck, release = asyncio.Event(), asyncio.Event()
    copied = Offsets()

    @zombie.stream(
        source,
        name="copy",
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        auto_commit_interval_ms=60_000,
        **static,
    )
    async def old(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(sink, value=cr.value)
        if cr.offset == 5:
            stuck.set()
            await release.wait()

    @successor.stream(
        source,
        name="copy",
        group_id=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly_once",
        **static,
    )
    async def new(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
        await send(sink, value=cr.value)
        copied.add(cr.offset)

    await zombie.start()
    try:
        await asyncio.wait_for(stuck.wait(), 60)
        await successor.start()
        await copied.wait_for(lambda offsets: 9 in offsets, within=60)
        deadline = time.monotonic() + 30
        while (await committed(noida_bootstrap, group)).get(TopicPartition(source, 0)) != 10:
            assert time.monotonic() < deadline, "the successor never committed"
            await asyncio.sleep(0.1)
        release.set()  # the zombie wakes up and tries to commit what it did
        await asyncio.wait_for(old.stop(), 30)
    finally:
        release.set()
        await zombie.stop()
        await successor.stop()
    assert sorted(await read_all(noida_bootstrap, sink)) == sorted(b"%d" % i for i in range(10))
    assert await committed(noida_bootstrap, group) == {TopicPartition(source, 0): 10}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_group_metadata_names_the_members_generation(
    backend: str, noida_bootstrap: str
) -> None:
    """Once assigned, a consumer port's group metadata names its group, a generation >= 1 and
    its member id (confluent's own object rides along for send_offsets_to_transaction)."""
    source, _ = await topics(noida_bootstrap, partitions=1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    settings = Aiokafka if backend == "aiokafka" else Confluent
    port: Any = settings(bootstrap_servers=noida_bootstrap).create_consumer(
        group_id=group, options={"auto_offset_reset": "earliest", **TIMINGS}
    )
    port.subscribe([source])
    await port.start()
    try:
        deadline = time.monotonic() + 30
        while not port.assignment():
            assert time.monotonic() < deadline, "never assigned"
            await port.getmany(timeout_ms=100)
        metadata = port.group_metadata()
    finally:
        await port.stop()
    assert metadata.group_id == group
    assert metadata.generation_id >= 1
    assert metadata.member_id
    assert (metadata.client_metadata is not None) == (backend == "confluent")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_second_member_joining_mid_stream_changes_nothing_in_the_output(
    backend: str, noida_bootstrap: str
) -> None:
    """A member joins while the first is copying: the eager rebalance commits and closes the
    first's transactions, both members copy, and every input is in the output once."""
    source, sink = await topics(noida_bootstrap, partitions=4)
    await fill(noida_bootstrap, source, 400, partitions=4)
    group = f"g-{uuid.uuid4().hex[:6]}"
    first, second = engine_for(backend, noida_bootstrap), engine_for(backend, noida_bootstrap)
    handled: dict[str, list[int]] = {"first": [], "second": []}

    def copier(engine: StreamEngine, who: str) -> None:
        @engine.stream(
            source,
            name="copy",
            group_id=group,
            auto_offset_reset="earliest",
            processing_guarantee="exactly_once",
            **TIMINGS,
        )
        async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
            await asyncio.sleep(0.005)  # slow enough for the join to land mid-stream
            await send(sink, value=cr.value)
            handled[who].append(cr.offset)

    copier(first, "first")
    copier(second, "second")
    await first.start()
    try:
        deadline = time.monotonic() + 60
        while len(handled["first"]) < 50:
            assert time.monotonic() < deadline, "the first member copied nothing"
            await asyncio.sleep(0.05)
        await second.start()
        tps = [TopicPartition(source, p) for p in range(4)]
        while await committed(noida_bootstrap, group) != dict.fromkeys(tps, 100):
            assert time.monotonic() < deadline + 60, "not every input was committed"
            await asyncio.sleep(0.25)
    finally:
        await first.stop()
        await second.stop()
    assert handled["second"], "the second member was given nothing"
    values = await read_all(noida_bootstrap, sink)
    assert sorted(values) == sorted(b"%d" % i for i in range(400))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_member_leaving_mid_stream_hands_over_without_a_duplicate(
    backend: str, noida_bootstrap: str
) -> None:
    """Of two exactly-once members, one stops mid-stream: its transactions are committed on
    the way out, the other takes its partitions over, and every input is in the output once."""
    source, sink = await topics(noida_bootstrap, partitions=4)
    await fill(noida_bootstrap, source, 600, partitions=4)
    group = f"g-{uuid.uuid4().hex[:6]}"
    leaver, stayer = engine_for(backend, noida_bootstrap), engine_for(backend, noida_bootstrap)
    handled: dict[str, list[int]] = {"leaver": [], "stayer": []}

    def copier(engine: StreamEngine, who: str) -> None:
        @engine.stream(
            source,
            name="copy",
            group_id=group,
            auto_offset_reset="earliest",
            processing_guarantee="exactly_once",
            **TIMINGS,
        )
        async def copy(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:
            await asyncio.sleep(0.005)
            await send(sink, value=cr.value)
            handled[who].append(cr.offset)

    copier(leaver, "leaver")
    copier(stayer, "stayer")
    await leaver.start()
    await stayer.start()
    try:
        deadline = time.monotonic() + 60
        while len(handled["leaver"]) + len(handled["stayer"]) < 200:
            assert time.monotonic() < deadline, "the members copied too little"
            await asyncio.sleep(0.05)
        await leaver.stop()
        left_at = len(handled["stayer"])
        tps = [TopicPartition(source, p) for p in range(4)]
        while await committed(noida_bootstrap, group) != dict.fromkeys(tps, 150):
            assert time.monotonic() < deadline + 60, "not every input was committed"
            await asyncio.sleep(0.25)
    finally:
        await leaver.stop()
        await stayer.stop()
    assert handled["leaver"], "the leaver copied nothing before it left"
    assert len(handled["stayer"]) > left_at, "the stayer took nothing over"
    values = await read_all(noida_bootstrap, sink)
    assert sorted(values) == sorted(b"%d" % i for i in range(600))
