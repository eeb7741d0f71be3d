"""Backend settings: which client to use and how to reach the cluster.

Each class is a frozen, validated value and the factory of its adapters.
The adapter module, and with it the client library, is imported only when
a consumer or producer is first built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kstreams.exceptions import BackendNotAvailableError, ConfigError
from kstreams.ports import ConsumerPort, ProducerPort

if TYPE_CHECKING:
    import ssl

    from kstreams.backends.memory import MemoryCluster

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


def _default_bootstrap() -> str:
    return os.environ.get("KSTREAMS_BOOTSTRAP_SERVERS", "localhost:9092")


@dataclass(frozen=True, kw_only=True)
class _ClientSettings:
    """Connection settings shared by the real clients, named as aiokafka names them."""

    bootstrap_servers: str | list[str] = field(default_factory=_default_bootstrap)
    client_id: str | None = None
    security_protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str = "PLAIN"
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = field(default=None, repr=False)
    sasl_kerberos_service_name: str = "kafka"
    sasl_kerberos_domain_name: str | None = None
    sasl_oauth_token_provider: Any = None

    def __post_init__(self) -> None:
        # Enum members (kstreams.backends.kafka.SecurityProtocol.SSL) become their
        # plain value, so clients and reprs see the string they document.
        for name in ("security_protocol", "sasl_mechanism"):
            value = getattr(self, name)
            if isinstance(value, str) and type(value) is not str:
                object.__setattr__(self, name, str(value))
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol must be one of {SECURITY_PROTOCOLS}, "
                f"got {self.security_protocol!r}"
            )
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"sasl_mechanism must be one of {SASL_MECHANISMS}, got {self.sasl_mechanism!r}"
            )
        plain = self.security_protocol.startswith("SASL") and self.sasl_mechanism == "PLAIN"
        if plain and (self.sasl_plain_username is None or self.sasl_plain_password is None):
            raise ConfigError("SASL PLAIN needs sasl_plain_username and sasl_plain_password")
        if self.security_protocol.endswith("SSL") and self.ssl_context is None:
            raise ConfigError(f"security_protocol={self.security_protocol!r} needs an ssl_context")

    def client_options(self) -> dict[str, Any]:
        """The connection settings as aiokafka keyword arguments, defaults left out."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.client_id is not None:
            options["client_id"] = self.client_id
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_plain_username,
                sasl_plain_password=self.sasl_plain_password,
                sasl_kerberos_service_name=self.sasl_kerberos_service_name,
                sasl_kerberos_domain_name=self.sasl_kerberos_domain_name,
                sasl_oauth_token_provider=self.sasl_oauth_token_provider,
            )
        return options


@dataclass(frozen=True, kw_only=True)
class Aiokafka(_ClientSettings):
    """The default backend: aiokafka's consumer and producer on the event loop."""

    name: str = field(default="aiokafka", init=False)

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> ConsumerPort:
        from kstreams.backends.aiokafka import AiokafkaConsumer

        return AiokafkaConsumer(group_id=group_id, **{**self.client_options(), **options})

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        from kstreams.backends.aiokafka import AiokafkaProducer

        return AiokafkaProducer(**{**self.client_options(), **options})

    def check_consumer_options(self, *, group_id: str | None, options: Mapping[str, Any]) -> None:
        """Nothing beyond the core's checks: the options are aiokafka's own."""


#: The name kstreams users already write for the aiokafka settings.
Kafka = Aiokafka


@dataclass(frozen=True, kw_only=True)
class Confluent(_ClientSettings):
    """confluent-kafka (librdkafka), driven from worker threads.

    Takes the same aiokafka keyword arguments, translated to librdkafka
    properties; ``extra_config`` passes librdkafka-only properties through.
    """

    name: str = field(default="confluent", init=False)
    extra_config: Mapping[str, Any] = field(default_factory=dict)

    def _adapter(self) -> Any:
        try:
            from kstreams.backends import confluent

            # Importing the package alone does not load confluent-kafka.
            confluent.ConfluentConsumer  # noqa: B018
        except ModuleNotFoundError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise BackendNotAvailableError(
                "the confluent backend needs confluent-kafka: pip install 'kstreams-hex[confluent]'"
            ) from exc
        return confluent

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> ConsumerPort:
        consumer: ConsumerPort = self._adapter().ConfluentConsumer(
            group_id=group_id,
            extra_config=self.extra_config,
            **{**self.client_options(), **options},
        )
        return consumer

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        producer: ProducerPort = self._adapter().ConfluentProducer(
            extra_config=self.extra_config, **{**self.client_options(), **options}
        )
        return producer

    def check_consumer_options(self, *, group_id: str | None, options: Mapping[str, Any]) -> None:
        """Translate the options to librdkafka properties now, as ``create_consumer`` will."""
        from kstreams.backends.confluent.config import consumer_config

        consumer_config(
            group_id=group_id,
            options={**self.client_options(), **options},
            extra_config=self.extra_config,
        )


@dataclass(frozen=True, kw_only=True)
class Memory:
    """The in-process broker. Engines given the same cluster see the same topics;
    without one, the process-wide default cluster is used."""

    cluster: MemoryCluster | None = None
    name: str = field(default="memory", init=False)

    def resolved_cluster(self) -> MemoryCluster:
        from kstreams.backends.memory import default_cluster

        return self.cluster if self.cluster is not None else default_cluster()

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> ConsumerPort:
        from kstreams.backends.memory import MemoryConsumer

        return MemoryConsumer(self.resolved_cluster(), group_id=group_id, **options)

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        from kstreams.backends.memory import MemoryProducer

        return MemoryProducer(self.resolved_cluster(), **options)

    def check_consumer_options(self, *, group_id: str | None, options: Mapping[str, Any]) -> None:
        """Nothing beyond the core's checks: the memory backend accepts aiokafka's options."""
