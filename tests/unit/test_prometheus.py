"""PrometheusMonitor: offsets and lags read from the engine at scrape time, on a real registry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry, generate_latest

from kstreams import ConsumerRecord, Stream, StreamEngine, TopicPartition, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.prometheus import PrometheusMonitor
from tests.polling import eventually


def sample(registry: CollectorRegistry, name: str, topic: str, partition: int, group: str) -> float:
    value = registry.get_sample_value(
        name, {"topic": topic, "partition": str(partition), "consumer_group": group}
    )
    assert value is not None, f"no {name} for {topic}[{partition}] {group}"
    return value


async def test_offsets_and_lags_after_produce_consume_commit() -> None:
    """Producer offset, committed, position, highwater and both lags match what happened."""
    registry = CollectorRegistry()
    engine = create_engine(backend=Memory(cluster=MemoryCluster()))
    monitor = PrometheusMonitor(registry)
    monitor.watch(engine)
    five_handled = asyncio.Event()
    release = asyncio.Event()

    @engine.stream(
        "pay", group_id="billing", auto_offset_reset="earliest", enable_auto_commit=False
    )
    async def bill(cr: ConsumerRecord[bytes, bytes], stream: Stream) -> None:
        if cr.offset == 2:
            await stream.commit()  # offsets 0..2: committed = 3
        if cr.offset == 4:
            five_handled.set()
        if cr.offset == 5:
            await release.wait()

    await engine.start()
    try:
        for i in range(5):
            await engine.send("pay", value=str(i).encode())
        await asyncio.wait_for(five_handled.wait(), 10)
        assert (
            registry.get_sample_value("topic_partition_offsets", {"topic": "pay", "partition": "0"})
            == 4
        )
        assert sample(registry, "consumer_committed", "pay", 0, "billing") == 3
        assert sample(registry, "consumer_highwater", "pay", 0, "billing") == 5
        assert sample(registry, "consumer_lag", "pay", 0, "billing") == 2

        # The handler holds offset 5; 6 and 7 wait behind it.
        for i in range(5, 8):
            await engine.send("pay", value=str(i).encode())
        consumer = bill.consumer
        assert consumer is not None
        await eventually(lambda: consumer.highwater(TopicPartition("pay", 0)) == 8)
        assert sample(registry, "consumer_position", "pay", 0, "billing") == 6
        assert sample(registry, "consumer_highwater", "pay", 0, "billing") == 8
        assert sample(registry, "position_lag", "pay", 0, "billing") == 2
        assert sample(registry, "consumer_lag", "pay", 0, "billing") == 5
        release.set()
    finally:
        await engine.stop()
    assert (
        registry.get_sample_value("topic_partition_offsets", {"topic": "pay", "partition": "0"})
        == 7
    )
    assert (
        registry.get_sample_value(
            "consumer_position", {"topic": "pay", "partition": "0", "consumer_group": "billing"}
        )
        is None
    ), "a stopped stream reports nothing"


async def test_revoked_partitions_disappear() -> None:
    """A rebalance removes the lost partition's metrics and reports the kept one's offsets."""
    cluster = MemoryCluster()
    cluster.create_topic("split", partitions=2)
    registry = CollectorRegistry()
    first = create_engine(backend=Memory(cluster=cluster))
    second = create_engine(backend=Memory(cluster=cluster))
    PrometheusMonitor(registry).watch(first)

    def declare(engine: StreamEngine) -> Stream:
        @engine.stream(
            "split", group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=50
        )
        async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
            pass

        return handle

    stream_one = declare(first)
    declare(second)
    await first.start()
    try:
        await first.send("split", value=b"a", partition=0)
        await first.send("split", value=b"b", partition=1)
        await eventually(
            lambda: (
                registry.get_sample_value(
                    "consumer_committed",
                    {"topic": "split", "partition": "1", "consumer_group": "g"},
                )
                == 1
            )
        )
        assert sample(registry, "consumer_position", "split", 0, "g") == 1
        assert sample(registry, "consumer_position", "split", 1, "g") == 1

        await second.start()
        consumer = stream_one.consumer
        assert consumer is not None
        await eventually(lambda: len(consumer.assignment()) == 1)
        kept = next(iter(consumer.assignment())).partition
        lost = 1 - kept
        assert sample(registry, "consumer_highwater", "split", kept, "g") == 1
        # The new assignment starts from the group's commit, asked in the background.
        kept_labels = {"topic": "split", "partition": str(kept), "consumer_group": "g"}
        await eventually(
            lambda: (
                registry.get_sample_value("consumer_committed", kept_labels) == 1
                and registry.get_sample_value("consumer_position", kept_labels) == 1
            )
        )
        assert sample(registry, "consumer_lag", "split", kept, "g") == 0
        for name in ("consumer_committed", "consumer_position", "consumer_highwater"):
            labels = {"topic": "split", "partition": str(lost), "consumer_group": "g"}
            assert registry.get_sample_value(name, labels) is None, name
    finally:
        await second.stop()
        await first.stop()


async def test_a_scrape_from_another_thread_reads_on_the_loop() -> None:
    """start_http_server scrapes from its own thread; values are read on the engine's loop."""
    registry = CollectorRegistry()
    engine = create_engine(backend=Memory(cluster=MemoryCluster()))
    PrometheusMonitor(registry).watch(engine)
    got = asyncio.Event()

    @engine.stream("t", group_id="g", auto_offset_reset="earliest")
    async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
        got.set()

    await engine.start()
    try:
        await engine.send("t", value=b"x")
        await asyncio.wait_for(got.wait(), 10)
        text = (await asyncio.to_thread(generate_latest, registry)).decode()
    finally:
        await engine.stop()
    assert 'topic_partition_offsets{partition="0",topic="t"} 0.0' in text
    assert 'consumer_highwater{consumer_group="g",partition="0",topic="t"} 1.0' in text


async def test_close_unregisters() -> None:
    """After close the registry no longer has the monitor's metrics, and a new one can register."""
    registry = CollectorRegistry()
    monitor = PrometheusMonitor(registry)
    monitor.close()
    PrometheusMonitor(registry)
    assert b"# TYPE consumer_lag gauge" in generate_latest(registry)


def test_missing_prometheus_client_names_the_extra() -> None:
    """Without prometheus-client, importing kstreams.prometheus says which extra to install."""
    code = textwrap.dedent(
        """
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "prometheus_client":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Blocker())
        import kstreams
        try:
            import kstreams.prometheus
        except ModuleNotFoundError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'kstreams-hex[prometheus]'" in result.stdout
