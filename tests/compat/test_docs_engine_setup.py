"""kpn/kstreams' "Monitoring", "Backends", "Clients", "Rebalance Listener" and "Large
project structure" pages, as a migrating user runs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, Counter

import kstreams
from kstreams import (
    ConsumerRecord,
    ManualCommitRebalanceListener,
    MetricsRebalanceListener,
    PrometheusMonitor,
    RebalanceListener,
    Send,
    Stream,
    TopicPartition,
    backends,
    create_engine,
)
from kstreams.test_utils import TestStreamClient


class MyAppPrometheusMonitor(PrometheusMonitor):
    """The monitoring page's subclass: kstreams' metrics plus two business counters."""

    def __init__(self) -> None:
        super().__init__()  # initialize kstream metrics
        self.orders_received = Counter("orders_received", "Amount of orders received")
        self.orders_shipped = Counter("orders_shipped", "Amount of orders shipped")

    def increase_received(self, amount: int = 1) -> None:
        self.orders_received.inc(amount)

    def increase_shipped(self, amount: int = 1) -> None:
        self.orders_shipped.inc(amount)


@pytest.fixture
def app_monitor() -> Iterator[MyAppPrometheusMonitor]:
    """The subclass on prometheus-client's global registry, as the page uses it, unregistered
    afterwards so the registry is as before."""
    monitor = MyAppPrometheusMonitor()
    try:
        yield monitor
    finally:
        REGISTRY.unregister(monitor.orders_received)
        REGISTRY.unregister(monitor.orders_shipped)
        monitor.close()


@dataclasses.dataclass
class Order:
    status: str


class OrderDeserializer:
    async def deserialize(self, consumer_record: ConsumerRecord, **kwargs: Any) -> Any:
        return dataclasses.replace(consumer_record, value=Order(consumer_record.value.decode()))


async def test_custom_business_metrics(app_monitor: MyAppPrometheusMonitor) -> None:
    """`create_engine(monitor=...)`, `engine.monitor` in a handler, and kstreams' own gauges."""
    stream_engine = create_engine(
        title="my-engine", monitor=app_monitor, deserializer=OrderDeserializer()
    )
    assert stream_engine.monitor is app_monitor

    @stream_engine.stream("my-special-orders", group_id="orders")
    async def consume_orders_received(cr: ConsumerRecord) -> None:
        if cr.value.status == "NEW":
            stream_engine.monitor.increase_received()
        elif cr.value.status == "SHIPPED":
            stream_engine.monitor.increase_shipped()

    async with TestStreamClient(stream_engine) as client:
        for status in (b"NEW", b"NEW", b"SHIPPED"):
            await client.send("my-special-orders", value=status)
        await client.wait_handled()
        offsets = REGISTRY.get_sample_value(
            "topic_partition_offsets", {"topic": "my-special-orders", "partition": "0"}
        )
    assert REGISTRY.get_sample_value("orders_received_total") == 2
    assert REGISTRY.get_sample_value("orders_shipped_total") == 1
    assert offsets == 2


def test_prometheus_monitor_is_at_the_top_level() -> None:
    """`from kstreams import PrometheusMonitor` is kstreams.prometheus.PrometheusMonitor."""
    from kstreams.prometheus import PrometheusMonitor as from_module

    assert kstreams.PrometheusMonitor is from_module


def test_backends_page_plaintext_example() -> None:
    """`Kafka(bootstrap_servers=[...])` in `create_engine(backend=...)`."""
    from kstreams.backends.kafka import Kafka

    backend = Kafka(bootstrap_servers=["localhost:9092"])
    stream_engine = create_engine(title="my-stream-engine", backend=backend)
    assert stream_engine.backend is backend
    assert backend.client_options() == {
        "bootstrap_servers": ["localhost:9092"],
        "security_protocol": "PLAINTEXT",
    }


async def test_clients_page_producer_settings_example() -> None:
    """`from kstreams.clients import ProducerSettings` with `create_engine(producer_settings=)`."""
    from kstreams.backends.kafka import Kafka
    from kstreams.clients import ProducerSettings

    backend = Kafka(bootstrap_servers=["localhost:9092"])
    producer_settings = ProducerSettings(
        client_id="my-producer", linger_ms=10, request_timeout_ms=80000
    )
    stream_engine = create_engine(backend=backend, producer_settings=producer_settings)
    client = TestStreamClient(stream_engine, topics=["t"])
    async with client:
        metadata = await stream_engine.send("t", value=b"x")
    assert metadata.offset == 0


async def test_rebalance_listeners_of_the_page() -> None:
    """MetricsRebalanceListener and custom listeners get `stream`/`engine` and the callbacks;
    a ManualCommitRebalanceListener subclass commits what was handled before revoking."""
    calls: list[tuple[str, frozenset[TopicPartition]]] = []

    class MyMetricsListener(MetricsRebalanceListener):
        async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
            assert self.stream is not None
            assert self.engine is not None
            calls.append(("assigned", frozenset(assigned)))

    class MyCommitListener(ManualCommitRebalanceListener):
        def __init__(self) -> None:
            super().__init__()

        async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
            calls.append(("revoked", frozenset(revoked)))
            await super().on_partitions_revoked(revoked=revoked)

    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("orders", group_id="m", rebalance_listener=MyMetricsListener())
    async def metrics(cr: ConsumerRecord) -> None: ...

    @stream_engine.stream(
        "orders", group_id="c", enable_auto_commit=False, rebalance_listener=MyCommitListener()
    )
    async def manual(cr: ConsumerRecord) -> None: ...

    assert isinstance(MyMetricsListener(), RebalanceListener)
    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("orders", value=b"x")
        await client.send("orders", value=b"y")
    tp = TopicPartition("orders", 0)
    assert ("assigned", frozenset({tp})) in calls
    assert ("revoked", frozenset({tp})) in calls
    assert client.get_topic("orders").committed("c") == {0: 2}


def large_project_engine() -> Any:
    """resources.py of the large-project page: a Kafka backend with a SecurityProtocol member."""
    backend = backends.Kafka(
        bootstrap_servers=["localhost:9092"],
        security_protocol=backends.kafka.SecurityProtocol.PLAINTEXT,
    )
    return kstreams.create_engine(title="my-stream-engine", backend=backend)


async def stream_roster(cr: ConsumerRecord, send: Send) -> None:
    """streams_roster.py: the handler, kept apart from the engine."""
    await send("another-topic-to-wink", value=f"Event confirmed. {cr.value!r}".encode(), key="1")


async def test_large_project_with_the_stream_client_fixture() -> None:
    """The page's conftest fixture `TestStreamClient(stream_engine=...)` and its test."""
    stream_engine = large_project_engine()
    stream_engine.add_stream(Stream("local--hello-world", func=stream_roster, group_id="g"))
    stream_client = TestStreamClient(stream_engine=stream_engine)
    topic = "local--hello-world"
    async with stream_client:
        metadata = await stream_client.send(topic, value=b'{"message": "Hello world!"}', key="1")
        assert metadata.topic == topic
        confirmed = await stream_client.get_event(topic_name="another-topic-to-wink")
    assert confirmed.value.startswith(b"Event confirmed.")


async def test_large_project_stream_with_a_config_dict() -> None:
    """streams.py of the page: `Stream(topic, func=..., config={"group_id": ...})`."""
    stream_engine = large_project_engine()
    my_stream = Stream(
        "local--hello-world", func=stream_roster, config={"group_id": "example-group"}
    )
    stream_engine.add_stream(my_stream)
    assert my_stream.group_id == "example-group"


async def test_large_project_add_stream_with_an_error_policy() -> None:
    """app.py of the page: `stream_engine.add_stream(my_stream, error_policy=...)`."""
    from kstreams.streams_utils import StreamErrorPolicy

    stream_engine = large_project_engine()
    my_stream = Stream("local--hello-world", func=stream_roster, group_id="example-group")
    stream_engine.add_stream(my_stream, error_policy=StreamErrorPolicy.RESTART)
    assert my_stream.error_policy is StreamErrorPolicy.RESTART
