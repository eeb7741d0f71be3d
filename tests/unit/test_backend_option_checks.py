"""Consumer options are checked when a stream is declared, and mean the same on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from kstreams import ConsumerRecord, create_engine
from kstreams.backends.aiokafka import AiokafkaConsumer
from kstreams.backends.confluent.config import consumer_config
from kstreams.backends.settings import Aiokafka, Confluent, Memory
from kstreams.exceptions import ConfigError
from kstreams.options import heartbeat_interval_ms

BACKENDS = {
    "aiokafka": lambda: Aiokafka(bootstrap_servers="127.0.0.1:1"),
    "confluent": lambda: Confluent(bootstrap_servers="127.0.0.1:1"),
    "memory": Memory,
}


async def handler(cr: ConsumerRecord[Any, Any]) -> None: ...


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(
    "options",
    [
        {"session_timeout_ms": 1500, "heartbeat_interval_ms": 1500},
        {"session_timeout_ms": 1500, "heartbeat_interval_ms": 3000},
        {"heartbeat_interval_ms": 10000},
    ],
)
def test_heartbeat_not_below_the_session_fails_at_the_decorator(
    backend: str, options: dict[str, Any]
) -> None:
    """heartbeat_interval_ms >= session_timeout_ms (given or default) raises ConfigError at once."""
    engine = create_engine(backend=BACKENDS[backend]())
    with pytest.raises(ConfigError, match=r"heartbeat_interval_ms=.* must be below"):
        engine.stream("t", group_id="g", **options)
    assert engine.streams == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 3000),
        ({"session_timeout_ms": 30000}, 3000),
        ({"session_timeout_ms": 9000}, 3000),
        ({"session_timeout_ms": 1500}, 500),
        ({"session_timeout_ms": 1500, "heartbeat_interval_ms": 200}, 200),
    ],
)
def test_heartbeat_is_derived_the_same_way_on_every_backend(
    options: dict[str, Any], expected: int
) -> None:
    """Without heartbeat_interval_ms, both clients heartbeat at min(3 s, session / 3)."""
    assert heartbeat_interval_ms(options) == expected
    confluent = consumer_config(group_id="g", options=options, extra_config={})
    assert confluent.properties["heartbeat.interval.ms"] == expected
    aiokafka = AiokafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:1", **options)
    assert aiokafka._options["heartbeat_interval_ms"] == expected


def test_confluent_option_without_equivalent_fails_at_the_decorator() -> None:
    """An option librdkafka cannot honour raises ConfigError naming it at the decorator."""
    engine = create_engine(backend=Confluent(bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(ConfigError, match="rebalance_timeout_ms=5000 has no equivalent"):
        engine.stream("t", group_id="g", rebalance_timeout_ms=5000)(handler)
    with pytest.raises(ConfigError, match="partition_assignment_strategy"):
        engine.stream("t", group_id="g", partition_assignment_strategy=["sticky"])
    assert engine.streams == []


def test_confluent_extra_config_is_checked_at_the_decorator() -> None:
    """extra_config that breaks the adapter's contract is reported when the stream is declared."""
    engine = create_engine(
        backend=Confluent(bootstrap_servers="127.0.0.1:1", extra_config={"group.id": "other"})
    )
    with pytest.raises(ConfigError, match=r"extra_config may not set group\.id"):
        engine.stream("t", group_id="g")


@pytest.mark.parametrize("backend", ["aiokafka", "memory"])
def test_options_aiokafka_honours_are_accepted_elsewhere(backend: str) -> None:
    """Options that only confluent cannot honour are fine on aiokafka and memory."""
    engine = create_engine(backend=BACKENDS[backend]())
    stream = engine.stream("t", group_id="g", rebalance_timeout_ms=5000)(handler)
    assert engine.streams == [stream]
