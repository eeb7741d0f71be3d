"""The aiokafka -> librdkafka translation of the confluent backend, row by row.

One case per row of the verified mapping tables (consumer_map.tsv and
producer_map.tsv): no broker, and confluent_kafka is imported only by the
GSSAPI probe and the murmur2 check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.partitioner import DefaultPartitioner

from kstreams.backends.confluent import security
from kstreams.backends.confluent.config import (
    ConsumerConfig,
    ProducerConfig,
    consumer_config,
    producer_config,
    subscription_pattern,
)
from kstreams.backends.confluent.security import token_expiry
from kstreams.exceptions import ConfigError, UnknownOptionError
from kstreams.options import CONSUMER_OPTIONS, PRODUCER_OPTIONS

# A throwaway self-signed CA certificate (no key kept): SSL rows need one.
TEST_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUNuQY8iPbyR5BYvUMT3STNlK/skUwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQa3N0cmVhbXMtdGVzdC1jYTAgFw0yNjExMjQwNjQwMTJaGA8y
MTI2MTAzMTA2NDAxMlowGzEZMBcGA1UEAwwQa3N0cmVhbXMtdGVzdC1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABDylQpJ6czjg0eN5Yi56JJcjL0wSIPCcJ4Y2
OBUEZ388fOx2h2msP8nAL9IsGvk5tqbB/HcyrOVshl2zX4SzCKCjUzBRMB0GA1Ud
DgQWBBSB4hsvq7/aFW6vuJmYChX5zkpjsjAfBgNVHSMEGDAWgBSB4hsvq7/aFW6v
uJmYChX5zkpjsjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFQA
G6BcCtisQ3p4g/7kTf2+pZY3Et5d3J7aZKhnNzOtAiEAzimJVKPLb37pwzcgH4dX
bGEvwGHyRdCuHhkvlxz9FKo=
-----END CERTIFICATE-----
"""


def ca_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=TEST_CA_PEM)
    return context


def insecure_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class CustomAssignor:
    name = "roundrobin"


class TokenProvider:
    async def token(self) -> str:
        return "opaque-token"

    def extensions(self) -> dict[str, str]:
        return {"traceid": "abc"}


def custom_partitioner(key: bytes | None, every: list[int], available: list[int]) -> int:
    return every[-1]


KSTREAMS_CLIENT_ID = "kstreams-consumer"


@dataclass
class Case:
    row: str
    options: dict[str, Any] = field(default_factory=dict)
    #: librdkafka properties expected (a subset of the translation).
    properties: Mapping[str, Any] = field(default_factory=dict)
    #: Properties that must not be set.
    absent: tuple[str, ...] = ()
    #: Checks on the translated config as a whole.
    check: Callable[[Any], object] | None = None
    #: ``(ConfigError subclass, regex)`` when the row has no equivalent.
    raises: tuple[type[Exception], str] | None = None
    group_id: str | None = "group"
    extra_config: dict[str, Any] = field(default_factory=dict)
    gssapi: bool = False
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or self.row


def kafka_sasl(mechanism: str, **options: Any) -> dict[str, Any]:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism, **options}


CONSUMER_CASES = [
    Case(
        "*topics",
        check=lambda c: (
            subscription_pattern("orders-.*") == "^orders-.*"
            and subscription_pattern("^orders$") == "^orders$"
        ),
    ),
    Case("loop", {"loop": None}, absent=("loop",)),
    Case(
        "bootstrap_servers",
        {"bootstrap_servers": ["a:9092", "b:9093"]},
        {"bootstrap.servers": "a:9092,b:9093"},
    ),
    Case(
        "bootstrap_servers", {}, {"bootstrap.servers": "localhost"}, id="bootstrap_servers-default"
    ),
    Case("client_id", {"client_id": "me"}, {"client.id": "me"}),
    Case("client_id", {}, {"client.id": KSTREAMS_CLIENT_ID}, id="client_id-default"),
    Case("group_id", {}, {"group.id": "group"}, check=lambda c: c.group_id == "group"),
    Case(
        "group_id",
        group_id=None,
        check=lambda c: (
            c.group_id is None and c.properties["group.id"].startswith("kstreams-nogroup-")
        ),
        id="group_id-none",
    ),
    Case("group_instance_id", {"group_instance_id": "member-1"}, {"group.instance.id": "member-1"}),
    Case(
        "key_deserializer", {"key_deserializer": bytes.decode}, check=lambda c: _same_as_default(c)
    ),
    Case(
        "value_deserializer",
        {"value_deserializer": bytes.decode},
        check=lambda c: _same_as_default(c),
    ),
    Case("fetch_max_wait_ms", {"fetch_max_wait_ms": 123}, {"fetch.wait.max.ms": 123}),
    Case(
        "fetch_max_bytes",
        {"fetch_max_bytes": 2_000_000},
        {"fetch.max.bytes": 2_000_000},
        absent=("message.max.bytes",),
    ),
    Case(
        "fetch_max_bytes",
        {"fetch_max_bytes": 500_000},
        {"fetch.max.bytes": 500_000, "message.max.bytes": 500_000},
        id="fetch_max_bytes-below-message-max",
    ),
    Case("fetch_min_bytes", {"fetch_min_bytes": 7}, {"fetch.min.bytes": 7}),
    Case(
        "max_partition_fetch_bytes",
        {"max_partition_fetch_bytes": 4096},
        {"max.partition.fetch.bytes": 4096, "queued.max.messages.kbytes": 1024},
    ),
    Case(
        "max_partition_fetch_bytes",
        {"max_partition_fetch_bytes": 10 * 1048576 + 1},
        {"queued.max.messages.kbytes": 10 * 1024 + 1},
        id="max_partition_fetch_bytes-bounds-the-prefetch-queue",
    ),
    Case(
        "request_timeout_ms",
        {"request_timeout_ms": 5000},
        {"socket.timeout.ms": 5000},
        absent=("request.timeout.ms",),
        check=lambda c: c.request_timeout_s == 5.0,
    ),
    Case(
        "retry_backoff_ms",
        {"retry_backoff_ms": 250},
        {"retry.backoff.ms": 250, "retry.backoff.max.ms": 250},
    ),
    Case("auto_offset_reset", {"auto_offset_reset": "earliest"}, {"auto.offset.reset": "earliest"}),
    Case("auto_offset_reset", {}, {"auto.offset.reset": "latest"}, id="auto_offset_reset-default"),
    Case(
        "auto_offset_reset",
        {"auto_offset_reset": "none"},
        {"auto.offset.reset": "error"},
        check=lambda c: c.auto_offset_reset == "none",
        id="auto_offset_reset-none",
    ),
    Case(
        "enable_auto_commit",
        {"enable_auto_commit": True},
        {"enable.auto.commit": False, "enable.auto.offset.store": False},
    ),
    Case(
        "auto_commit_interval_ms",
        {"auto_commit_interval_ms": 1000},
        absent=("auto.commit.interval.ms",),
    ),
    Case("check_crcs", {}, {"check.crcs": True}),
    Case("check_crcs", {"check_crcs": False}, {"check.crcs": False}, id="check_crcs-false"),
    Case(
        "metadata_max_age_ms",
        {"metadata_max_age_ms": 60000},
        {"topic.metadata.refresh.interval.ms": 60000},
        absent=("metadata.max.age.ms",),
    ),
    Case("partition_assignment_strategy", {}, {"partition.assignment.strategy": "roundrobin"}),
    Case(
        "partition_assignment_strategy",
        {"partition_assignment_strategy": (RangePartitionAssignor, RoundRobinPartitionAssignor)},
        {"partition.assignment.strategy": "range,roundrobin"},
        id="partition_assignment_strategy-range",
    ),
    Case(
        "partition_assignment_strategy",
        {"partition_assignment_strategy": (StickyPartitionAssignor,)},
        raises=(
            ConfigError,
            "partition_assignment_strategy.*no equivalent in the confluent backend",
        ),
        id="partition_assignment_strategy-sticky",
    ),
    Case(
        "partition_assignment_strategy",
        {"partition_assignment_strategy": (CustomAssignor,)},
        raises=(
            ConfigError,
            "partition_assignment_strategy.*no equivalent in the confluent backend",
        ),
        id="partition_assignment_strategy-custom",
    ),
    Case(
        "max_poll_interval_ms",
        {"max_poll_interval_ms": 600000},
        {"max.poll.interval.ms": 600000},
        check=lambda c: c.max_poll_interval_s == 600.0,
    ),
    Case(
        "max_poll_interval_ms",
        {"max_poll_interval_ms": 5000, "session_timeout_ms": 6000},
        raises=(ConfigError, "max_poll_interval_ms.*no equivalent in the confluent backend"),
        id="max_poll_interval_ms-below-session",
    ),
    Case(
        "rebalance_timeout_ms", {"rebalance_timeout_ms": 300000}, {"max.poll.interval.ms": 300000}
    ),
    Case(
        "rebalance_timeout_ms",
        {"rebalance_timeout_ms": 10000},
        raises=(ConfigError, "rebalance_timeout_ms.*no equivalent in the confluent backend"),
        id="rebalance_timeout_ms-differs",
    ),
    Case("session_timeout_ms", {}, {"session.timeout.ms": 10000}),
    Case(
        "session_timeout_ms",
        {"session_timeout_ms": 1500},
        {"session.timeout.ms": 1500},
        id="session_timeout_ms-set",
    ),
    Case("heartbeat_interval_ms", {"heartbeat_interval_ms": 300}, {"heartbeat.interval.ms": 300}),
    Case("consumer_timeout_ms", {"consumer_timeout_ms": 50}, check=lambda c: _same_as_default(c)),
    Case(
        "max_poll_records",
        {"max_poll_records": 7},
        absent=("max.poll.records",),
        check=lambda c: c.batch_size == 7,
    ),
    Case(
        "max_poll_records", {}, check=lambda c: c.batch_size == 500, id="max_poll_records-default"
    ),
    Case(
        "max_poll_records",
        {"max_poll_records": 2_000_000},
        raises=(ConfigError, "max_poll_records.*no equivalent in the confluent backend"),
        id="max_poll_records-too-large",
    ),
    Case(
        "ssl_context",
        {"security_protocol": "SSL", "ssl_context": ca_context()},
        {"security.protocol": "ssl", "ssl.endpoint.identification.algorithm": "https"},
        check=lambda c: c.properties["ssl.ca.pem"].strip() == TEST_CA_PEM.strip(),
    ),
    Case(
        "ssl_context",
        {"security_protocol": "SSL", "ssl_context": insecure_context()},
        {
            "enable.ssl.certificate.verification": False,
            "ssl.endpoint.identification.algorithm": "none",
        },
        id="ssl_context-cert-none",
    ),
    Case(
        "ssl_context",
        {"security_protocol": "SSL", "ssl_context": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)},
        raises=(ConfigError, "ssl_context.*no equivalent in the confluent backend"),
        id="ssl_context-no-readable-ca",
    ),
    Case(
        "ssl_context",
        {"security_protocol": "SSL", "ssl_context": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)},
        extra_config={"ssl.ca.location": "/etc/ssl/certs/ca.pem"},
        check=lambda c: (
            c.client_properties(pattern=False)["ssl.ca.location"] == "/etc/ssl/certs/ca.pem"
        ),
        id="ssl_context-ca-from-extra-config",
    ),
    Case("security_protocol", {}, {"security.protocol": "plaintext"}),
    Case(
        "security_protocol",
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_plain_username": "u",
            "sasl_plain_password": "p",
        },
        {"security.protocol": "sasl_plaintext"},
        id="security_protocol-sasl",
    ),
    Case(
        "api_version",
        {"api_version": "2.8.0"},
        absent=("api.version.request", "broker.version.fallback"),
        check=lambda c: _same_as_default(c),
    ),
    Case(
        "exclude_internal_topics",
        {},
        check=lambda c: (
            c.client_properties(pattern=True)["topic.blacklist"]
            == "^__consumer_offsets$,^__transaction_state$"
            and "topic.blacklist" not in c.client_properties(pattern=False)
        ),
    ),
    Case(
        "exclude_internal_topics",
        {"exclude_internal_topics": False},
        check=lambda c: "topic.blacklist" not in c.client_properties(pattern=True),
        id="exclude_internal_topics-false",
    ),
    Case("connections_max_idle_ms", {}, {"connections.max.idle.ms": 540000}),
    Case(
        "connections_max_idle_ms",
        {"connections_max_idle_ms": None},
        {"connections.max.idle.ms": 0},
        id="connections_max_idle_ms-none",
    ),
    Case("isolation_level", {}, {"isolation.level": "read_uncommitted"}),
    Case(
        "isolation_level",
        {"isolation_level": "read_committed"},
        {"isolation.level": "read_committed"},
        id="isolation_level-committed",
    ),
    Case(
        "sasl_mechanism",
        kafka_sasl("SCRAM-SHA-512", sasl_plain_username="u", sasl_plain_password="p"),
        {"sasl.mechanism": "SCRAM-SHA-512"},
    ),
    Case(
        "sasl_mechanism",
        kafka_sasl("GSSAPI"),
        raises=(ConfigError, "sasl_mechanism='GSSAPI' has no equivalent in the confluent backend"),
        id="sasl_mechanism-gssapi-missing",
    ),
    Case(
        "sasl_plain_password",
        kafka_sasl("PLAIN", sasl_plain_username="u", sasl_plain_password="secret"),
        {"sasl.password": "secret"},
    ),
    Case(
        "sasl_plain_username",
        kafka_sasl("PLAIN", sasl_plain_username="alice", sasl_plain_password="p"),
        {"sasl.username": "alice", "sasl.mechanism": "PLAIN"},
    ),
    Case(
        "sasl_kerberos_service_name",
        kafka_sasl("GSSAPI", sasl_kerberos_service_name="kafka-svc"),
        {"sasl.mechanism": "GSSAPI", "sasl.kerberos.service.name": "kafka-svc"},
        gssapi=True,
    ),
    Case(
        "sasl_kerberos_domain_name",
        {"sasl_kerberos_domain_name": "example.com"},
        raises=(
            ConfigError,
            "sasl_kerberos_domain_name='example.com' has no equivalent in the confluent backend",
        ),
    ),
    Case(
        "sasl_oauth_token_provider",
        kafka_sasl("OAUTHBEARER", sasl_oauth_token_provider=TokenProvider()),
        {"sasl.mechanism": "OAUTHBEARER"},
        check=lambda c: (
            isinstance(c.token_provider, TokenProvider) and "oauth_cb" not in c.properties
        ),
    ),
    Case("client_rack", {"client_rack": "rack-1"}, {"client.rack": "rack-1"}),
]

PRODUCER_CASES = [
    Case("loop", {"loop": None}, absent=("loop",)),
    Case(
        "bootstrap_servers",
        {"bootstrap_servers": "k1:9092,k2:9092"},
        {"bootstrap.servers": "k1:9092,k2:9092"},
    ),
    Case("client_id", {"client_id": "me"}, {"client.id": "me"}),
    Case(
        "client_id",
        {},
        check=lambda c: c.properties["client.id"].startswith("kstreams-producer-"),
        id="client_id-default",
    ),
    Case(
        "metadata_max_age_ms",
        {"metadata_max_age_ms": 1000},
        {"topic.metadata.refresh.interval.ms": 1000},
        check=lambda c: c.metadata_max_age_s == 1.0,
    ),
    Case(
        "request_timeout_ms",
        {"request_timeout_ms": 7000},
        {"request.timeout.ms": 7000, "message.timeout.ms": 7000, "socket.timeout.ms": 7000},
        check=lambda c: c.request_timeout_s == 7.0,
    ),
    Case(
        "api_version",
        {"api_version": "auto"},
        absent=("api.version.request", "broker.version.fallback"),
    ),
    Case("acks", {}, {"acks": "1"}),
    Case("acks", {"acks": "all"}, {"acks": "all"}, id="acks-all"),
    Case("acks", {"acks": -1}, {"acks": "all"}, id="acks-minus-one"),
    Case("acks", {"acks": 0}, {"acks": "0"}, id="acks-zero"),
    Case(
        "key_serializer",
        {"key_serializer": str.encode},
        check=lambda c: c.key_serializer is str.encode,
    ),
    Case(
        "value_serializer",
        {"value_serializer": str.encode},
        check=lambda c: c.value_serializer is str.encode,
    ),
    Case("compression_type", {}, {"compression.type": "none"}),
    Case(
        "compression_type",
        {"compression_type": "zstd"},
        {"compression.type": "zstd"},
        id="compression_type-zstd",
    ),
    Case("max_batch_size", {"max_batch_size": 32768}, {"batch.size": 32768}),
    Case(
        "partitioner", {}, {"partitioner": "murmur2_random"}, check=lambda c: c.partitioner is None
    ),
    Case(
        "partitioner",
        {"partitioner": DefaultPartitioner()},
        {"partitioner": "murmur2_random"},
        id="partitioner-aiokafka-default",
    ),
    Case(
        "partitioner",
        {"partitioner": custom_partitioner},
        absent=("partitioner",),
        check=lambda c: c.partitioner is custom_partitioner,
        id="partitioner-custom",
    ),
    Case("max_request_size", {"max_request_size": 2_000_000}, {"message.max.bytes": 2_000_000}),
    Case(
        "max_request_size",
        {"max_request_size": 500},
        raises=(ConfigError, "max_request_size.*no equivalent in the confluent backend"),
        id="max_request_size-too-small",
    ),
    Case("linger_ms", {}, {"linger.ms": 0}),
    Case(
        "retry_backoff_ms",
        {"retry_backoff_ms": 300},
        {"retry.backoff.ms": 300, "retry.backoff.max.ms": 300},
    ),
    Case(
        "security_protocol",
        {"security_protocol": "SSL", "ssl_context": ca_context()},
        {"security.protocol": "ssl"},
    ),
    Case(
        "ssl_context",
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "u",
            "sasl_plain_password": "p",
            "ssl_context": ca_context(),
        },
        {"security.protocol": "sasl_ssl", "ssl.endpoint.identification.algorithm": "https"},
        check=lambda c: "BEGIN CERTIFICATE" in c.properties["ssl.ca.pem"],
    ),
    Case(
        "connections_max_idle_ms", {"connections_max_idle_ms": None}, {"connections.max.idle.ms": 0}
    ),
    Case(
        "enable_idempotence",
        {"enable_idempotence": True},
        {"enable.idempotence": True, "acks": "all"},
    ),
    Case(
        "enable_idempotence",
        {"enable_idempotence": True, "acks": 1},
        raises=(ConfigError, "acks=1 is not allowed with idempotence"),
        id="enable_idempotence-acks-1",
    ),
    Case(
        "transactional_id",
        {"transactional_id": "tx-1"},
        {
            "transactional.id": "tx-1",
            "enable.idempotence": True,
            "acks": "all",
            "transaction.timeout.ms": 60000,
        },
        absent=("message.timeout.ms",),
        check=lambda c: c.transactional,
    ),
    Case(
        "transaction_timeout_ms",
        {"transactional_id": "tx-1", "transaction_timeout_ms": 30000},
        {"transaction.timeout.ms": 30000},
    ),
    Case(
        "sasl_mechanism",
        kafka_sasl("SCRAM-SHA-256", sasl_plain_username="u", sasl_plain_password="p"),
        {"sasl.mechanism": "SCRAM-SHA-256"},
    ),
    Case(
        "sasl_plain_password",
        kafka_sasl("PLAIN", sasl_plain_username="u", sasl_plain_password="secret"),
        {"sasl.password": "secret"},
    ),
    Case(
        "sasl_plain_username",
        kafka_sasl("PLAIN", sasl_plain_username="bob", sasl_plain_password="p"),
        {"sasl.username": "bob"},
    ),
    Case(
        "sasl_kerberos_service_name",
        kafka_sasl("GSSAPI", sasl_kerberos_service_name="kafka-svc"),
        {"sasl.kerberos.service.name": "kafka-svc"},
        gssapi=True,
    ),
    Case(
        "sasl_kerberos_domain_name",
        kafka_sasl("GSSAPI", sasl_kerberos_domain_name="example.com"),
        raises=(
            ConfigError,
            "sasl_kerberos_domain_name='example.com' has no equivalent in the confluent backend",
        ),
    ),
    Case(
        "sasl_oauth_token_provider",
        kafka_sasl("OAUTHBEARER", sasl_oauth_token_provider=TokenProvider()),
        {"sasl.mechanism": "OAUTHBEARER"},
        check=lambda c: isinstance(c.token_provider, TokenProvider),
    ),
]


def _same_as_default(config: ConsumerConfig) -> bool:
    default = consumer_config(group_id="group", options={}, extra_config={})
    return dict(config.properties) == dict(default.properties)


def _translate(case: Case, kind: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    if case.gssapi:
        monkeypatch.setattr(security, "gssapi_available", lambda: True)
    if kind == "consumer":
        return consumer_config(
            group_id=case.group_id, options=case.options, extra_config=case.extra_config
        )
    return producer_config(options=case.options, extra_config=case.extra_config)


def _assert_case(case: Case, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.raises is not None:
        error, pattern = case.raises
        with pytest.raises(error, match=pattern):
            _translate(case, kind, monkeypatch)
        return
    config = _translate(case, kind, monkeypatch)
    for name, value in case.properties.items():
        assert config.properties[name] == value, name
    for name in case.absent:
        assert name not in config.client_properties(
            **({"pattern": False} if kind == "consumer" else {})
        )
    if case.check is not None:
        assert case.check(config)


@pytest.mark.parametrize("case", CONSUMER_CASES, ids=lambda case: case.id)
def test_consumer_row(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each AIOKafkaConsumer kwarg becomes the verified librdkafka property, or a ConfigError."""
    _assert_case(case, "consumer", monkeypatch)


@pytest.mark.parametrize("case", PRODUCER_CASES, ids=lambda case: case.id)
def test_producer_row(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each AIOKafkaProducer kwarg becomes the verified librdkafka property, or a ConfigError."""
    _assert_case(case, "producer", monkeypatch)


def test_cases_cover_every_row() -> None:
    """The table has a case for every kwarg aiokafka accepts, and nothing else."""
    assert {case.row for case in CONSUMER_CASES} == CONSUMER_OPTIONS | {"*topics", "loop"}
    assert {case.row for case in PRODUCER_CASES} == PRODUCER_OPTIONS | {"loop"}


def test_defaults_that_differ_are_explicit() -> None:
    """Where librdkafka's default differs from aiokafka's, the aiokafka value is passed."""
    consumer = consumer_config(group_id="g", options={}, extra_config={}).properties
    assert {
        name: consumer[name]
        for name in (
            "session.timeout.ms",
            "isolation.level",
            "check.crcs",
            "auto.offset.reset",
            "partition.assignment.strategy",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "fetch.queue.backoff.ms",
            "connections.max.idle.ms",
            "allow.auto.create.topics",
        )
    } == {
        "session.timeout.ms": 10000,
        "isolation.level": "read_uncommitted",
        "check.crcs": True,
        "auto.offset.reset": "latest",
        "partition.assignment.strategy": "roundrobin",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.queue.backoff.ms": 10,
        "connections.max.idle.ms": 540000,
        "allow.auto.create.topics": True,
    }
    producer = producer_config(options={}, extra_config={}).properties
    assert (producer["acks"], producer["linger.ms"], producer["partitioner"]) == (
        "1",
        0,
        "murmur2_random",
    )


def test_extra_config_overrides() -> None:
    """extra_config passes librdkafka properties through, over the translated ones."""
    consumer = consumer_config(
        group_id="g",
        options={},
        extra_config={"fetch.wait.max.ms": 5, "statistics.interval.ms": 1000},
    )
    properties = consumer.client_properties(pattern=False)
    assert (properties["fetch.wait.max.ms"], properties["statistics.interval.ms"]) == (5, 1000)
    producer = producer_config(options={}, extra_config={"queue.buffering.max.messages": 1})
    assert producer.client_properties()["queue.buffering.max.messages"] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"enable.auto.commit": True},
        {"enable.auto.offset.store": "true"},
        {"group.id": "other"},
        {"partition.assignment.strategy": "cooperative-sticky"},
    ],
)
def test_extra_config_cannot_break_the_contract(extra: dict[str, Any]) -> None:
    """extra_config may not turn on auto-commit, change the group or make rebalances incremental."""
    with pytest.raises(ConfigError, match="extra_config"):
        consumer_config(group_id="g", options={}, extra_config=extra)


def test_misspelled_kwarg_is_rejected() -> None:
    """A kwarg aiokafka does not accept is an UnknownOptionError, as on every backend."""
    with pytest.raises(UnknownOptionError, match="session_timeout_ms"):
        consumer_config(group_id="g", options={"sesion_timeout_ms": 1}, extra_config={})
    with pytest.raises(UnknownOptionError, match="linger_ms"):
        producer_config(options={"linger_msec": 1}, extra_config={})


def test_murmur2_random_places_keys_like_aiokafka() -> None:
    """librdkafka's murmur2 picks the partition aiokafka's DefaultPartitioner picks."""
    import confluent_kafka

    partitions = list(range(7))
    for number in range(200):
        key = f"key-{number}".encode()
        assert confluent_kafka.murmur2(key, 7) == DefaultPartitioner()(key, partitions, partitions)


async def test_oauth_callback_runs_the_provider_on_the_loop() -> None:
    """The oauth_cb librdkafka calls from its thread awaits the provider's token() on the loop."""
    config = consumer_config(
        group_id="g",
        options=kafka_sasl("OAUTHBEARER", sasl_oauth_token_provider=TokenProvider()),
        extra_config={},
    )
    oauth_cb = config.client_properties(pattern=False, loop=asyncio.get_running_loop())["oauth_cb"]
    before = time.time()
    token, expiry, principal, extensions = await asyncio.to_thread(oauth_cb, "")
    assert (token, principal, extensions) == ("opaque-token", "", {"traceid": "abc"})
    assert before + 59 <= expiry <= time.time() + 61


def test_token_expiry_reads_a_jwt_exp_claim() -> None:
    """A JWT's exp claim is its expiry; an opaque token gets a short lifetime."""
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 1_900_000_000}).encode()).rstrip(b"=")
    assert token_expiry(f"h.{claims.decode()}.s", now=0.0) == 1_900_000_000.0
    assert token_expiry("opaque", now=100.0) == 160.0


def test_producer_config_is_frozen() -> None:
    """Translated configs are values: they cannot be changed after the fact."""
    config = producer_config(options={}, extra_config={})
    assert isinstance(config, ProducerConfig)
    with pytest.raises(AttributeError):
        config.transactional = True  # type: ignore[misc]
