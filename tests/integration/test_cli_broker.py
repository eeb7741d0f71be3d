"""`kstreams run` on the aiokafka backend against a real broker, stopped by SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstreams.backends.aiokafka import AiokafkaConsumer
from kstreams.records import TopicPartition
from tests.broker import group_timings
from tests.unit.test_cli import Service

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


async def committed_on_broker(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    reader = AiokafkaConsumer(group_id=group, bootstrap_servers=bootstrap)
    await reader.start()
    try:
        return await reader.committed(tp)
    finally:
        await reader.stop()


async def test_sigterm_stops_a_broker_service_after_committing(
    kafka_bootstrap: str, unique: str, tmp_path: Path, services: list[Service]
) -> None:
    """On the real broker: exit 0 after SIGTERM, every record handled once and committed."""
    topic, group = f"cli-{unique}", f"cli-g-{unique}"
    env = {
        "KSTREAMS_BACKEND": "aiokafka",
        "KSTREAMS_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "APP_TOPIC": topic,
        "APP_GROUP": group,
        "APP_COUNT": "10",
        "APP_DELAY": "0.05",
        "APP_SESSION_TIMEOUT_MS": str(group_timings(kafka_bootstrap)["session_timeout_ms"]),
    }
    service = Service(tmp_path / "handled", env, "--graceful-timeout", "20")
    services.append(service)
    service.wait_handled(3)
    service.signal(signal.SIGTERM)
    code, err = service.finish(timeout_s=40)
    assert code == 0, err
    handled = service.handled()
    assert handled == list(range(len(handled)))
    assert "on the aiokafka backend" in err
    assert f"subscribed to ['{topic}'] as group '{group}'" in err
    committed = await committed_on_broker(kafka_bootstrap, group, TopicPartition(topic, 0))
    assert committed == len(handled)
