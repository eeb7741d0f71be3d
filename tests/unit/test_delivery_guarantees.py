"""At-least-once, proved on the memory backend with a recording wrapper around its ports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kstreams import ConsumerRecord, Stream, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from tests.recording import RecordingBackend


def recording(cluster: MemoryCluster) -> RecordingBackend:
    return RecordingBackend(Memory(cluster=cluster))


async def test_an_unhandled_offset_is_never_committed() -> None:
    """Every commit, periodic, on revoke or on stop, covers only records whose handling finished."""
    cluster = MemoryCluster()
    cluster.create_topic("orders", partitions=3)
    backend = recording(cluster)
    handled: set[tuple[int, int]] = set()
    violations: list[str] = []
    total = 600
    all_done = asyncio.Event()

    def check(offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            missing = [o for o in range(offset) if (tp.partition, o) not in handled]
            if missing:
                violations.append(f"{tp} committed {offset} before handling {missing[:5]}")

    engines = []
    for member in range(2):
        engine = create_engine(backend=backend, title=f"member-{member}")

        @engine.stream(
            "orders",
            group_id="billing",
            auto_offset_reset="earliest",
            auto_commit_interval_ms=1,
            max_poll_records=7,
        )
        async def bill(cr: ConsumerRecord[bytes, bytes]) -> None:
            # Yield mid-record so commits, fetches and rebalances interleave with handling.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            handled.add((cr.partition, cr.offset))
            if len(handled) == total:
                all_done.set()

        engines.append(engine)

    await engines[0].start()
    for consumer in backend.consumers:
        consumer.on_commit = check
    producer = create_engine(backend=Memory(cluster=cluster))
    await producer.start()
    for i in range(total // 2):
        await producer.send("orders", value=b"%d" % i, key=b"%d" % i)
    await engines[1].start()  # a rebalance while records are in flight
    for consumer in backend.consumers:
        consumer.on_commit = check
    for i in range(total // 2, total):
        await producer.send("orders", value=b"%d" % i, key=b"%d" % i)
    await asyncio.wait_for(all_done.wait(), 20)
    for engine in engines:
        await engine.stop()
    await producer.stop()

    commits = [entry for entry in backend.log if entry[0] == "consumer.commit"]
    assert len(commits) > 3, "the scenario must exercise several commits"
    assert violations == []
    for tp in (TopicPartition("orders", p) for p in range(3)):
        assert cluster.committed("billing", tp) == cluster.end_offset(tp)


async def test_a_handled_record_is_not_redelivered_after_a_graceful_stop() -> None:
    """Records handled before stop() are committed by it, so the next run starts after them."""
    cluster = MemoryCluster()
    first_run: list[int] = []
    second_run: list[int] = []
    got_first, got_second = asyncio.Event(), asyncio.Event()

    def make_engine(sink: list[int], done: asyncio.Event, count: int) -> None:
        engine = create_engine(backend=Memory(cluster=cluster))

        # A long interval: only the commit on stop can save the progress.
        @engine.stream(
            "audit",
            group_id="auditor",
            auto_offset_reset="earliest",
            auto_commit_interval_ms=3_600_000,
        )
        async def audit(cr: ConsumerRecord[bytes, bytes]) -> None:
            sink.append(cr.offset)
            if len(sink) == count:
                done.set()

        engines.append(engine)

    engines: list = []
    for i in range(5):
        cluster.append("audit", b"%d" % i)
    make_engine(first_run, got_first, 5)
    await engines[0].start()
    await asyncio.wait_for(got_first.wait(), 10)
    await engines[0].stop()

    for i in range(5, 8):
        cluster.append("audit", b"%d" % i)
    make_engine(second_run, got_second, 3)
    await engines[1].start()
    await asyncio.wait_for(got_second.wait(), 10)
    await engines[1].stop()

    assert first_run == [0, 1, 2, 3, 4]
    assert second_run == [5, 6, 7]


async def test_stop_drains_then_commits_then_closes_consumers_then_the_producer() -> None:
    """engine.stop(): the record in hand finishes, its offset is committed, the consumer
    closes, and only then is the producer flushed and closed."""
    cluster = MemoryCluster()
    backend = recording(cluster)
    engine = create_engine(backend=backend)
    entered, release = asyncio.Event(), asyncio.Event()

    @engine.stream(
        "work", group_id="workers", auto_offset_reset="earliest", auto_commit_interval_ms=3_600_000
    )
    async def work(cr: ConsumerRecord[bytes, bytes]) -> None:
        entered.set()
        await release.wait()
        backend.log.append(("handler.done", cr.offset))

    await engine.start()
    await engine.send("work", value=b"job")
    await asyncio.wait_for(entered.wait(), 10)
    stopping = asyncio.create_task(engine.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)

    kinds = backend.kinds()
    tail = kinds[kinds.index("handler.done") :]
    assert tail == ["handler.done", "consumer.commit", "consumer.stop", "producer.stop"]
    commit = next(e for e in backend.log if e[0] == "consumer.commit")
    assert commit[2] == {TopicPartition("work", 0): 1}


async def test_a_slow_handler_keeps_polling_with_a_bounded_buffer() -> None:
    """While the handler is stuck, fetching goes on (the consumer stays in its group), the
    buffer stays bounded with partitions paused, and every record is handled afterwards in order."""
    cluster = MemoryCluster()
    cluster.create_topic("flood", partitions=2)
    for i in range(3000):
        cluster.append("flood", b"%d" % i, partition=i % 2)
    backend = recording(cluster)
    engine = create_engine(backend=backend)
    release = asyncio.Event()
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    @engine.stream(
        "flood",
        group_id="slow",
        auto_offset_reset="earliest",
        max_poll_records=50,
        max_buffered_records=200,
    )
    async def slow(cr: ConsumerRecord[bytes, bytes]) -> None:
        await release.wait()
        seen.append((cr.partition, cr.offset))
        if len(seen) == 3000:
            done.set()

    await engine.start()
    (port,) = backend.consumers
    polls_before = port.getmany_calls
    stream = engine.get_stream("slow")
    assert stream is not None
    assert stream.consumer is not None
    for _ in range(5):  # five fetch rounds of the stuck consumer
        await asyncio.sleep(0.12)
        assert stream.consumer.buffered <= 200 + 50
    assert port.getmany_calls >= polls_before + 3, "the consumer stopped polling"
    assert port.paused() == {TopicPartition("flood", 0), TopicPartition("flood", 1)}
    release.set()
    await asyncio.wait_for(done.wait(), 20)
    await engine.stop()
    for partition in (0, 1):
        offsets = [o for p, o in seen if p == partition]
        assert offsets == list(range(1500))
    assert stream.consumer.paused() == frozenset()


async def test_revoked_partitions_lose_their_buffered_records() -> None:
    """On revoke, records buffered for partitions that move are dropped, not handled by the
    old owner after the new one took over."""
    cluster = MemoryCluster()
    cluster.create_topic("moves", partitions=2)
    for i in range(400):
        cluster.append("moves", b"%d" % i, partition=i % 2)
    handled_by: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    gate, entered, everything = asyncio.Event(), asyncio.Event(), asyncio.Event()
    engines = {}
    for name in ("a", "b"):
        engine = create_engine(backend=Memory(cluster=cluster), title=name)

        @engine.stream(
            "moves",
            group_id="movers",
            auto_offset_reset="earliest",
            max_poll_records=20,
            session_timeout_ms=2000,
        )
        async def handle(
            cr: ConsumerRecord[bytes, bytes], stream: Stream, name: str = name
        ) -> None:
            entered.set()
            await gate.wait()
            handled_by[name].append((cr.partition, cr.offset))
            if sum(len(v) for v in handled_by.values()) >= 400:
                everything.set()

        engines[name] = engine

    await engines["a"].start()
    a_stream = engines["a"].get_stream("handle")
    assert a_stream is not None
    assert a_stream.consumer is not None
    await asyncio.wait_for(entered.wait(), 10)
    assert a_stream.consumer.buffered > 0
    await engines["b"].start()
    gate.set()

    await asyncio.wait_for(everything.wait(), 20)
    for engine in engines.values():
        await engine.stop()
    all_handled = handled_by["a"] + handled_by["b"]
    # One record may be handled twice: the one in hand when the drain timed out.
    assert len(all_handled) - len(set(all_handled)) <= 1
    assert set(all_handled) == {(i % 2, i // 2) for i in range(400)}
