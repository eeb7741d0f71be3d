"""PrometheusMonitor on the aiokafka backend against a real broker."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from kstreams import ConsumerRecord, create_engine
from kstreams.backends import Aiokafka
from kstreams.prometheus import PrometheusMonitor
from tests.broker import group_timings

pytestmark = pytest.mark.integration


async def test_offsets_and_lags_on_a_real_broker(kafka_bootstrap: str, unique: str) -> None:
    """Gauges agree with 5 records produced, consumed and committed, and after a restart."""
    topic, group = f"metrics-{unique}", f"metrics-g-{unique}"
    registry = CollectorRegistry()
    engine = create_engine(backend=Aiokafka(bootstrap_servers=kafka_bootstrap))
    PrometheusMonitor(registry).watch(engine)
    handled: list[int] = []

    @engine.stream(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        auto_commit_interval_ms=100,
        **group_timings(kafka_bootstrap),
    )
    async def count(cr: ConsumerRecord[bytes, bytes]) -> None:
        handled.append(cr.offset)

    labels = {"topic": topic, "partition": "0", "consumer_group": group}
    await engine.start()
    try:
        for i in range(5):
            await engine.send(topic, value=str(i).encode(), partition=0)
        deadline = time.monotonic() + 30
        while registry.get_sample_value("consumer_committed", labels) != 5:
            assert time.monotonic() < deadline, f"not committed; handled {handled}"
            await asyncio.sleep(0.05)
        assert (
            registry.get_sample_value("topic_partition_offsets", {"topic": topic, "partition": "0"})
            == 4
        )
        assert registry.get_sample_value("consumer_position", labels) == 5
        assert registry.get_sample_value("consumer_highwater", labels) == 5
        assert registry.get_sample_value("consumer_lag", labels) == 0
        assert registry.get_sample_value("position_lag", labels) == 0
    finally:
        await engine.stop()
    assert handled == [0, 1, 2, 3, 4]
    assert registry.get_sample_value("consumer_position", labels) is None

    # A new consumer of the group: nothing to fetch or commit, so the offsets
    # are asked of the broker at a scrape and reported from the next one.
    await engine.start()
    try:
        deadline = time.monotonic() + 30
        while registry.get_sample_value("consumer_lag", labels) is None:
            assert time.monotonic() < deadline, "no lag reported after the restart"
            await asyncio.sleep(0.05)
        assert registry.get_sample_value("consumer_committed", labels) == 5
        assert registry.get_sample_value("consumer_lag", labels) == 0
        deadline = time.monotonic() + 30
        while registry.get_sample_value("consumer_position", labels) != 5:
            assert time.monotonic() < deadline, "no position reported after the restart"
            await asyncio.sleep(0.05)
    finally:
        await engine.stop()
    assert handled == [0, 1, 2, 3, 4]
