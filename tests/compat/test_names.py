"""Every name and module path kpn/kstreams' docs and examples import resolves here."""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import kstreams
from kstreams import exceptions
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.ports import ProducerPort


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("kstreams", "BatchEvent"),
        ("kstreams", "ConsumerRecord"),
        ("kstreams", "GetMany"),
        ("kstreams", "ManualCommitRebalanceListener"),
        ("kstreams", "MetricsRebalanceListener"),
        ("kstreams", "ProducerSettings"),
        ("kstreams", "PrometheusMonitor"),
        ("kstreams", "RebalanceListener"),
        ("kstreams", "RecordMetadata"),
        ("kstreams", "Send"),
        ("kstreams", "SendMany"),
        ("kstreams", "Stream"),
        ("kstreams", "StreamEngine"),
        ("kstreams", "TestStreamClient"),
        ("kstreams", "TopicPartition"),
        ("kstreams", "TopicPartitionOffset"),
        ("kstreams", "create_engine"),
        ("kstreams", "stream"),
        ("kstreams.backends", "Kafka"),
        ("kstreams.backends.kafka", "Kafka"),
        ("kstreams.backends.kafka", "SecurityProtocol"),
        ("kstreams.backends.kafka", "SaslMechanism"),
        ("kstreams.clients", "ProducerSettings"),
        ("kstreams.consts", "StreamErrorPolicy"),
        ("kstreams.consts", "APPLICATION_JSON"),
        ("kstreams.consts", "APPLICATION_X_AVRO_BINARY"),
        ("kstreams.consts", "APPLICATION_X_AVRO_JSON"),
        ("kstreams.consts", "APPLICATION_X_JSON_SCHEMA"),
        ("kstreams.engine", "StreamEngine"),
        ("kstreams.middleware", "BaseMiddleware"),
        ("kstreams.middleware", "ExceptionMiddleware"),
        ("kstreams.middleware", "Middleware"),
        ("kstreams.middleware.middleware", "BaseMiddleware"),
        ("kstreams.middleware.middleware", "ExceptionMiddleware"),
        ("kstreams.middleware.middleware", "Middleware"),
        ("kstreams.middleware.middleware", "MiddlewareProtocol"),
        ("kstreams.serializers", "Deserializer"),
        ("kstreams.serializers", "NO_DEFAULT"),
        ("kstreams.serializers", "Serializer"),
        ("kstreams.streams", "Stream"),
        ("kstreams.streams_utils", "StreamErrorPolicy"),
        ("kstreams.structs", "GetMany"),
        ("kstreams.structs", "TopicPartitionOffset"),
        ("kstreams.test_utils", "TestStreamClient"),
        ("kstreams.test_utils", "TopicManager"),
        ("kstreams.types", "ConsumerRecord"),
        ("kstreams.types", "Deprecated"),
        ("kstreams.types", "EncodedHeaders"),
        ("kstreams.types", "EngineHooks"),
        ("kstreams.types", "Headers"),
        ("kstreams.types", "NextMiddlewareCall"),
        ("kstreams.types", "Send"),
        ("kstreams.types", "SendMany"),
        ("kstreams.types", "StreamFunc"),
        ("kstreams.types", "TimestampType"),
        ("kstreams.utils", "create_ssl_context"),
        ("kstreams.utils", "create_ssl_context_from_mem"),
        ("kstreams.utils", "encode_headers"),
    ],
)
def test_name_resolves(module: str, name: str) -> None:
    """`from <module> import <name>` works for each name kpn/kstreams documents there."""
    assert getattr(importlib.import_module(module), name) is not None


def test_attribute_paths_of_the_examples() -> None:
    """The dotted paths kpn's examples use after `import kstreams` / `from kstreams import x`."""
    from kstreams import backends, consts, middleware, structs, types, utils

    assert backends.kafka.SecurityProtocol.PLAINTEXT == "PLAINTEXT"
    assert kstreams.middleware.BaseMiddleware is middleware.BaseMiddleware
    assert kstreams.middleware.Middleware is middleware.Middleware
    assert consts.APPLICATION_JSON == "application/json"
    assert structs.TopicPartitionOffset(topic="t", partition=0, offset=3).offset == 3
    assert types.ConsumerRecord is kstreams.ConsumerRecord
    assert callable(utils.create_ssl_context)


def test_one_policy_enum_under_every_path() -> None:
    """StreamErrorPolicy is one enum, whichever kpn module path it is imported from."""
    from kstreams.consts import StreamErrorPolicy as from_consts
    from kstreams.streams_utils import StreamErrorPolicy as from_utils

    assert from_consts is from_utils is kstreams.StreamErrorPolicy
    assert {p.value for p in from_consts} == {"STOP", "RESTART", "STOP_ENGINE", "STOP_APPLICATION"}
    assert from_consts.RESTART == "RESTART"


def test_no_default_is_the_send_default() -> None:
    """`serializer=NO_DEFAULT` means what omitting `serializer` means: the engine's."""
    from kstreams.serializers import NO_DEFAULT

    assert NO_DEFAULT is kstreams.DEFAULT


def test_exception_names_are_aliases() -> None:
    """kpn's exception names catch the errors kstreams raises for the same condition."""
    assert exceptions.StreamException is exceptions.KStreamsError
    assert exceptions.DuplicateStreamException is exceptions.DuplicateStreamError
    assert exceptions.EngineNotStartedException is exceptions.EngineNotStartedError
    assert exceptions.BackendNotSet is exceptions.ConfigError


async def test_duplicate_stream_exception_is_raised_under_its_kpn_name() -> None:
    """Two streams with one name raise what `except DuplicateStreamException` catches."""
    engine = kstreams.create_engine(title="dup", backend="memory")

    @engine.stream("t", name="same")
    async def one(cr: kstreams.ConsumerRecord[Any, Any]) -> None: ...

    with pytest.raises(exceptions.DuplicateStreamException):

        @engine.stream("u", name="same")
        async def two(cr: kstreams.ConsumerRecord[Any, Any]) -> None: ...


async def test_send_before_start_raises_engine_not_started_exception() -> None:
    """Producing before start raises what `except EngineNotStartedException` catches."""
    engine = kstreams.create_engine(title="idle", backend="memory")
    with pytest.raises(exceptions.EngineNotStartedException):
        await engine.send("t", value=b"x")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_security_protocol_members_are_accepted(protocol: str) -> None:
    """Each SecurityProtocol member is accepted as `security_protocol=` and kept as its string."""
    from kstreams.backends.kafka import Kafka, SaslMechanism, SecurityProtocol

    member = SecurityProtocol(protocol)
    extra: dict[str, Any] = {}
    if protocol.endswith("SSL"):
        extra["ssl_context"] = ssl.create_default_context()
    if protocol.startswith("SASL"):
        extra.update(
            sasl_mechanism=SaslMechanism.PLAIN, sasl_plain_username="u", sasl_plain_password="p"
        )
    backend = Kafka(bootstrap_servers=["localhost:9092"], security_protocol=member, **extra)
    assert backend.security_protocol == protocol
    assert type(backend.security_protocol) is str
    assert backend.client_options()["security_protocol"] == protocol


def test_ssl_without_a_context_is_a_clear_error() -> None:
    """`security_protocol=SSL` without `ssl_context` fails at once, naming both."""
    from kstreams.backends.kafka import Kafka, SecurityProtocol

    with pytest.raises(exceptions.ConfigError, match="ssl_context"):
        Kafka(security_protocol=SecurityProtocol.SSL)


@dataclass(frozen=True, kw_only=True)
class RecordingMemory(Memory):
    """The memory backend, keeping the options each producer was built with."""

    producers: list[dict[str, Any]] = field(default_factory=list)

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        self.producers.append(dict(options))
        return super().create_producer(options)


async def test_producer_settings_reach_the_producer() -> None:
    """`create_engine(producer_settings=...)` builds the producer with the settings given."""
    from kstreams import ProducerSettings

    settings = ProducerSettings(client_id="my-producer", linger_ms=10, request_timeout_ms=80000)
    backend = RecordingMemory(cluster=MemoryCluster())
    engine = kstreams.create_engine(title="p", backend=backend, producer_settings=settings)
    await engine.start()
    try:
        metadata = await engine.send("t", value=b"x")
    finally:
        await engine.stop()
    assert metadata.offset == 0
    assert backend.producers == [
        {"client_id": "my-producer", "linger_ms": 10, "request_timeout_ms": 80000}
    ]


def test_producer_settings_are_checked() -> None:
    """ProducerSettings pass on what differs from the defaults, and check acks/idempotence."""
    from kstreams import ProducerSettings

    with pytest.raises(exceptions.ConfigError, match="acks='all'"):
        ProducerSettings(enable_idempotence=True)
    with pytest.raises(exceptions.ConfigError, match="linger_ms"):
        ProducerSettings(linger_ms=-1)
    assert ProducerSettings(enable_idempotence=True, acks="all").producer_options() == {
        "enable_idempotence": True,
        "acks": "all",
    }


def test_free_stream_decorator_checks_options_where_declared() -> None:
    """`@kstreams.stream(...)` builds an engine-less Stream and rejects a misspelled option."""

    @kstreams.stream("orders", group_id="shop", name="orders-stream", auto_offset_reset="earliest")
    async def orders(cr: kstreams.ConsumerRecord[Any, Any]) -> None: ...

    assert isinstance(orders, kstreams.Stream)
    assert (orders.name, orders.group_id, orders.engine) == ("orders-stream", "shop", None)
    with pytest.raises(exceptions.UnknownOptionError, match="session_timeout_ms"):

        @kstreams.stream("orders", sesion_timeout_ms=500)
        async def misspelled(cr: kstreams.ConsumerRecord[Any, Any]) -> None: ...
