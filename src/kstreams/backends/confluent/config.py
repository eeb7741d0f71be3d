"""aiokafka keyword arguments translated to librdkafka properties.

Pure translation, used by :mod:`kstreams.backends.confluent`; TLS and SASL are in
:mod:`.security`. Every setting
whose librdkafka default differs from aiokafka's is passed explicitly, so a
stream behaves the same on both backends. A keyword argument with no faithful
librdkafka equivalent raises ``ConfigError`` naming it; nothing is dropped
silently.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kstreams.backends.confluent.security import (
    no_equivalent,
    oauth_callback,
    security_properties,
)
from kstreams.exceptions import ConfigError
from kstreams.options import (
    PATTERN_METADATA_MAX_AGE_MS,
    check_consumer_options,
    check_producer_options,
    heartbeat_interval_ms,
    metadata_max_age_ms,
)

#: The start of the ``client.id`` kstreams gives a client when ``client_id`` is
#: not: the broker's logs and quotas then name kstreams, not another library.
CLIENT_ID_PREFIX = "kstreams"

#: ``consume(num_messages=...)`` when ``max_poll_records`` is not given.
DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 1_000_000

#: librdkafka otherwise waits up to a second before refilling a partition's
#: local queue once it was drained, which shows up as latency.
FETCH_QUEUE_BACKOFF_MS = 10

#: Floor of librdkafka's prefetch queue (``queued.max.messages.kbytes``).
MIN_PREFETCH_KBYTES = 1024


def prefetch_kbytes(max_partition_fetch_bytes: int) -> int:
    """librdkafka's prefetch bound: one partition fetch's worth, at least 1 MiB.

    Fetched-but-unhandled records are bounded by the stream's buffer; behind
    it librdkafka keeps prefetching up to 64 MiB by default, which under a
    slow handler showed as RSS growing (+26 % over 20 s) where aiokafka, which
    holds about one fetch per partition, stays flat. With one fetch's worth
    the measured RSS stayed flat (57.1 -> 57.1 MiB, benchmarks' rss_confluent).
    """
    return max(MIN_PREFETCH_KBYTES, -(-max_partition_fetch_bytes // 1024))


#: Topics aiokafka's ``exclude_internal_topics`` hides from pattern subscriptions.
INTERNAL_TOPICS_BLACKLIST = "^__consumer_offsets$,^__transaction_state$"

#: Properties the adapter relies on: ``extra_config`` may not change them.
_OWNED_CONSUMER_PROPERTIES = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
_OWNED_CONSUMER_KEYS = ("group.id", "group.protocol", "on_commit")

_AUTO_OFFSET_RESET = {"earliest": "earliest", "latest": "latest", "none": "error"}
_EAGER_ASSIGNORS = ("range", "roundrobin")
_COMPRESSION_TYPES = ("gzip", "snappy", "lz4", "zstd")
_ISOLATION_LEVELS = ("read_uncommitted", "read_committed")
_PRODUCER_IDS = itertools.count(1)


@dataclass(frozen=True, kw_only=True)
class ConsumerConfig:
    """A consumer's librdkafka properties and the settings the adapter applies itself."""

    properties: Mapping[str, Any]
    extra_config: Mapping[str, Any]
    #: The user's group; ``None`` means no group (``group.id`` is then synthetic).
    group_id: str | None
    batch_size: int
    request_timeout_s: float
    auto_offset_reset: str
    max_poll_interval_s: float
    exclude_internal_topics: bool
    #: ``topic.metadata.refresh.interval.ms`` of a pattern subscription.
    pattern_metadata_max_age_ms: int = PATTERN_METADATA_MAX_AGE_MS
    token_provider: Any = None

    def client_properties(
        self, *, pattern: bool, loop: asyncio.AbstractEventLoop | None = None
    ) -> dict[str, Any]:
        """The properties to build the client with, ``extra_config`` applied last."""
        properties = dict(self.properties)
        if pattern and self.exclude_internal_topics:
            properties["topic.blacklist"] = INTERNAL_TOPICS_BLACKLIST
        if pattern:
            properties["topic.metadata.refresh.interval.ms"] = self.pattern_metadata_max_age_ms
        if self.token_provider is not None and loop is not None:
            properties["oauth_cb"] = oauth_callback(
                self.token_provider, loop, timeout_s=self.request_timeout_s
            )
        properties.update(self.extra_config)
        return properties


@dataclass(frozen=True, kw_only=True)
class ProducerConfig:
    """A producer's librdkafka properties and the settings the adapter applies itself."""

    properties: Mapping[str, Any]
    extra_config: Mapping[str, Any]
    request_timeout_s: float
    metadata_max_age_s: float
    transactional: bool
    #: An aiokafka-style ``partitioner(key, all_partitions, available)``, or
    #: ``None`` when librdkafka's murmur2_random does the same job.
    partitioner: Callable[[bytes | None, list[int], list[int]], int] | None = None
    key_serializer: Callable[[Any], bytes | None] | None = None
    value_serializer: Callable[[Any], bytes | None] | None = None
    token_provider: Any = None

    def client_properties(self, *, loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Any]:
        properties = dict(self.properties)
        if self.token_provider is not None and loop is not None:
            properties["oauth_cb"] = oauth_callback(
                self.token_provider, loop, timeout_s=self.request_timeout_s
            )
        properties.update(self.extra_config)
        return properties


def subscription_pattern(pattern: str) -> str:
    """librdkafka treats a subscribed topic as a regex only when it starts with '^'.

    aiokafka matches patterns with ``re.match``, anchored at the start too.
    """
    return pattern if pattern.startswith("^") else f"^{pattern}"


def consumer_config(
    *, group_id: str | None, options: Mapping[str, Any], extra_config: Mapping[str, Any]
) -> ConsumerConfig:
    """Translate AIOKafkaConsumer keyword arguments (``loop`` tolerated and ignored)."""
    options = {name: value for name, value in options.items() if name != "loop"}
    check_consumer_options(options)
    extra = dict(extra_config)
    _check_owned(extra)

    def opt(name: str, default: Any) -> Any:
        value = options.get(name, default)
        return default if value is None and default is not None else value

    session_timeout_ms = opt("session_timeout_ms", 10000)
    max_poll_interval_ms = opt("max_poll_interval_ms", 300000)
    if max_poll_interval_ms < session_timeout_ms:
        raise no_equivalent(
            "max_poll_interval_ms",
            max_poll_interval_ms,
            f"librdkafka requires it to be >= session_timeout_ms ({session_timeout_ms})",
        )
    rebalance_timeout_ms = options.get("rebalance_timeout_ms")
    if rebalance_timeout_ms is not None and rebalance_timeout_ms != max_poll_interval_ms:
        raise no_equivalent(
            "rebalance_timeout_ms",
            rebalance_timeout_ms,
            "librdkafka always uses max_poll_interval_ms as the rebalance timeout; "
            "set both to the same value",
        )
    fetch_max_bytes = opt("fetch_max_bytes", 52428800)
    request_timeout_ms = opt("request_timeout_ms", 40000)
    reset = opt("auto_offset_reset", "latest")
    isolation_level = opt("isolation_level", "read_uncommitted")
    if isolation_level not in _ISOLATION_LEVELS:
        raise ConfigError(
            f"isolation_level must be one of {_ISOLATION_LEVELS}, got {isolation_level!r}"
        )
    batch_size = opt("max_poll_records", DEFAULT_BATCH_SIZE)
    if batch_size > MAX_BATCH_SIZE:
        raise no_equivalent(
            "max_poll_records", batch_size, f"librdkafka returns at most {MAX_BATCH_SIZE}"
        )

    properties: dict[str, Any] = {
        "bootstrap.servers": _bootstrap(options.get("bootstrap_servers")),
        "client.id": opt("client_id", f"{CLIENT_ID_PREFIX}-consumer"),
        # librdkafka cannot consume without a group id; a consumer without
        # one gets a private group it never joins nor commits to.
        "group.id": group_id if group_id is not None else f"kstreams-nogroup-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": opt("fetch_max_wait_ms", 500),
        "fetch.max.bytes": fetch_max_bytes,
        "fetch.min.bytes": opt("fetch_min_bytes", 1),
        "max.partition.fetch.bytes": opt("max_partition_fetch_bytes", 1048576),
        "queued.max.messages.kbytes": prefetch_kbytes(opt("max_partition_fetch_bytes", 1048576)),
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        # aiokafka's metadata requests let the broker auto-create a subscribed
        # topic; librdkafka's consumer asks it not to unless told.
        "allow.auto.create.topics": True,
        "socket.timeout.ms": request_timeout_ms,
        "auto.offset.reset": _AUTO_OFFSET_RESET[reset],
        "check.crcs": bool(opt("check_crcs", True)),
        "topic.metadata.refresh.interval.ms": opt("metadata_max_age_ms", 300000),
        "partition.assignment.strategy": _assignors(options.get("partition_assignment_strategy")),
        "max.poll.interval.ms": max_poll_interval_ms,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": heartbeat_interval_ms(options),
        "connections.max.idle.ms": options.get("connections_max_idle_ms", 540000) or 0,
        "isolation.level": isolation_level,
    }
    properties.update(_retry_backoff(opt("retry_backoff_ms", 100)))
    if fetch_max_bytes < 1000000:
        # librdkafka refuses fetch.max.bytes < message.max.bytes (default 1000000).
        properties["message.max.bytes"] = max(1000, fetch_max_bytes)
    if fetch_max_bytes + 512 > 100000000:
        properties["receive.message.max.bytes"] = fetch_max_bytes + 512
    if group_id is not None and options.get("group_instance_id") is not None:
        properties["group.instance.id"] = options["group_instance_id"]
    if options.get("client_rack") is not None:
        properties["client.rack"] = options["client_rack"]
    security, token_provider = security_properties(options, extra)
    properties.update(security)
    # key/value deserializers and the commit options are applied by the core
    # (CORE_CONSUMER_OPTIONS); api_version and consumer_timeout_ms tune
    # aiokafka internals with nothing to tune here.
    return ConsumerConfig(
        properties=properties,
        extra_config=extra,
        group_id=group_id,
        batch_size=batch_size,
        request_timeout_s=request_timeout_ms / 1000,
        auto_offset_reset=reset,
        max_poll_interval_s=max_poll_interval_ms / 1000,
        exclude_internal_topics=bool(opt("exclude_internal_topics", True)),
        pattern_metadata_max_age_ms=metadata_max_age_ms(options, pattern=True),
        token_provider=token_provider,
    )


def producer_config(
    *, options: Mapping[str, Any], extra_config: Mapping[str, Any]
) -> ProducerConfig:
    """Translate AIOKafkaProducer keyword arguments (``loop`` tolerated and ignored)."""
    options = {name: value for name, value in options.items() if name != "loop"}
    check_producer_options(options)
    extra = dict(extra_config)

    def opt(name: str, default: Any) -> Any:
        value = options.get(name, default)
        return default if value is None and default is not None else value

    transactional_id = options.get("transactional_id")
    idempotent = bool(options.get("enable_idempotence", False)) or transactional_id is not None
    acks = _acks(options.get("acks"), idempotent=idempotent)
    request_timeout_ms = opt("request_timeout_ms", 40000)
    max_request_size = opt("max_request_size", 1048576)
    if not 1000 <= max_request_size <= 1_000_000_000:
        raise no_equivalent(
            "max_request_size", max_request_size, "librdkafka accepts 1000..1000000000"
        )
    compression = options.get("compression_type")
    if compression is not None and compression not in _COMPRESSION_TYPES:
        raise ConfigError(
            f"compression_type must be one of {_COMPRESSION_TYPES} or None, got {compression!r}"
        )
    client_id = options.get("client_id")
    properties: dict[str, Any] = {
        "bootstrap.servers": _bootstrap(options.get("bootstrap_servers")),
        "client.id": client_id
        if client_id is not None
        else f"{CLIENT_ID_PREFIX}-producer-{next(_PRODUCER_IDS)}",
        "topic.metadata.refresh.interval.ms": opt("metadata_max_age_ms", 300000),
        "request.timeout.ms": request_timeout_ms,
        "socket.timeout.ms": request_timeout_ms,
        "acks": acks,
        "compression.type": compression if compression is not None else "none",
        "batch.size": opt("max_batch_size", 16384),
        "message.max.bytes": max_request_size,
        "linger.ms": opt("linger_ms", 0),
        "connections.max.idle.ms": options.get("connections_max_idle_ms", 540000) or 0,
        "enable.idempotence": idempotent,
    }
    properties.update(_retry_backoff(opt("retry_backoff_ms", 100)))
    if transactional_id is not None:
        # librdkafka derives message.timeout.ms from the transaction timeout
        # and refuses one above it.
        properties["transactional.id"] = transactional_id
        properties["transaction.timeout.ms"] = opt("transaction_timeout_ms", 60000)
    else:
        properties["message.timeout.ms"] = request_timeout_ms
    partitioner = options.get("partitioner")
    custom_partitioner = None
    if partitioner is None or _is_default_partitioner(partitioner):
        properties["partitioner"] = "murmur2_random"
    elif callable(partitioner):
        custom_partitioner = partitioner
    else:
        raise ConfigError(f"partitioner must be callable, got {partitioner!r}")
    security, token_provider = security_properties(options, extra)
    properties.update(security)
    return ProducerConfig(
        properties=properties,
        extra_config=extra,
        request_timeout_s=request_timeout_ms / 1000,
        metadata_max_age_s=opt("metadata_max_age_ms", 300000) / 1000,
        transactional=transactional_id is not None,
        partitioner=custom_partitioner,
        key_serializer=options.get("key_serializer"),
        value_serializer=options.get("value_serializer"),
        token_provider=token_provider,
    )


def _check_owned(extra: Mapping[str, Any]) -> None:
    for name, required in _OWNED_CONSUMER_PROPERTIES.items():
        if name in extra and str(extra[name]).lower() != str(required).lower():
            raise ConfigError(f"extra_config may not set {name}: kstreams commits offsets itself")
    for name in _OWNED_CONSUMER_KEYS:
        if name in extra:
            raise ConfigError(f"extra_config may not set {name}: the stream's settings own it")
    strategy = str(extra.get("partition.assignment.strategy", ""))
    if "cooperative" in strategy:
        raise ConfigError(
            "extra_config partition.assignment.strategy must be eager (range, roundrobin): "
            "kstreams revokes the whole assignment on every rebalance"
        )


def _bootstrap(servers: str | list[str] | None) -> str:
    if servers is None:
        return "localhost"
    if isinstance(servers, str):
        return servers
    return ",".join(servers)


def _retry_backoff(retry_backoff_ms: int) -> dict[str, Any]:
    # aiokafka backs off by a constant; capping librdkafka's exponential
    # backoff at the same value makes it constant too.
    return {"retry.backoff.ms": retry_backoff_ms, "retry.backoff.max.ms": retry_backoff_ms}


def _assignors(strategy: Any) -> str:
    if strategy is None:
        return "roundrobin"
    if isinstance(strategy, str) or not isinstance(strategy, (list, tuple)):
        strategy = (strategy,)
    names = []
    for assignor in strategy:
        name = assignor if isinstance(assignor, str) else _aiokafka_assignor_name(assignor)
        if name not in _EAGER_ASSIGNORS:
            raise no_equivalent(
                "partition_assignment_strategy",
                assignor,
                f"only aiokafka's eager {' and '.join(_EAGER_ASSIGNORS)} assignors are supported",
            )
        names.append(name)
    if not names:
        raise ConfigError("partition_assignment_strategy must name at least one assignor")
    return ",".join(names)


def _aiokafka_assignor_name(assignor: Any) -> str | None:
    module = getattr(assignor, "__module__", "") or ""
    if not module.startswith("aiokafka."):
        return None
    name = getattr(assignor, "name", None)
    return name if isinstance(name, str) else None


def _is_default_partitioner(partitioner: Any) -> bool:
    cls = partitioner if isinstance(partitioner, type) else type(partitioner)
    return cls.__module__ == "aiokafka.partitioner" and cls.__name__ == "DefaultPartitioner"


def _acks(acks: Any, *, idempotent: bool) -> str:
    if acks is None:
        return "all" if idempotent else "1"
    if acks in ("all", -1):
        return "all"
    if acks in (0, 1):
        if idempotent:
            raise ConfigError(f"acks={acks!r} is not allowed with idempotence: use acks='all'")
        return str(acks)
    raise ConfigError(f"acks must be 0, 1, -1 or 'all', got {acks!r}")


__all__ = [
    "ConsumerConfig",
    "ProducerConfig",
    "consumer_config",
    "producer_config",
    "subscription_pattern",
]
