"""The keyword arguments streams and producers accept: aiokafka's, on every backend.

Checked when a stream is declared, so a misspelled option fails before
anything connects.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from kstreams.exceptions import ConfigError, UnknownOptionError
from kstreams.validation import check_option_values, invalid

#: AIOKafkaConsumer keyword arguments (aiokafka 0.14), ``loop`` excluded.
CONSUMER_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "client_id",
        "group_id",
        "group_instance_id",
        "key_deserializer",
        "value_deserializer",
        "fetch_max_wait_ms",
        "fetch_max_bytes",
        "fetch_min_bytes",
        "max_partition_fetch_bytes",
        "request_timeout_ms",
        "retry_backoff_ms",
        "auto_offset_reset",
        "enable_auto_commit",
        "auto_commit_interval_ms",
        "check_crcs",
        "metadata_max_age_ms",
        "partition_assignment_strategy",
        "max_poll_interval_ms",
        "rebalance_timeout_ms",
        "session_timeout_ms",
        "heartbeat_interval_ms",
        "consumer_timeout_ms",
        "max_poll_records",
        "ssl_context",
        "security_protocol",
        "api_version",
        "exclude_internal_topics",
        "connections_max_idle_ms",
        "isolation_level",
        "sasl_mechanism",
        "sasl_plain_password",
        "sasl_plain_username",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
        "client_rack",
    }
)

#: AIOKafkaProducer keyword arguments (aiokafka 0.14), ``loop`` excluded.
PRODUCER_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "client_id",
        "metadata_max_age_ms",
        "request_timeout_ms",
        "api_version",
        "acks",
        "key_serializer",
        "value_serializer",
        "compression_type",
        "max_batch_size",
        "partitioner",
        "max_request_size",
        "linger_ms",
        "retry_backoff_ms",
        "security_protocol",
        "ssl_context",
        "connections_max_idle_ms",
        "enable_idempotence",
        "transactional_id",
        "transaction_timeout_ms",
        "sasl_mechanism",
        "sasl_plain_password",
        "sasl_plain_username",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)

#: Options that kstreams itself implements, identically on every backend, so
#: they are never handed to a client.
CORE_CONSUMER_OPTIONS = frozenset(
    {"enable_auto_commit", "auto_commit_interval_ms", "key_deserializer", "value_deserializer"}
)

AUTO_OFFSET_RESET_VALUES = ("earliest", "latest", "none")

#: aiokafka's (and Kafka's) defaults of the group timeouts.
DEFAULT_SESSION_TIMEOUT_MS = 10000
DEFAULT_HEARTBEAT_INTERVAL_MS = 3000
DEFAULT_METADATA_MAX_AGE_MS = 300000
#: How often a pattern subscription looks for new matching topics when
#: ``metadata_max_age_ms`` is not given: neither client asks for topics it
#: does not know of before its next metadata refresh, 5 min by default.
PATTERN_METADATA_MAX_AGE_MS = 3000


def check_options(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise ``UnknownOptionError`` for the first name in ``given`` not in ``known``."""
    known = frozenset(known)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownOptionError(f"{kind} got an unexpected keyword argument {name!r}{hint}")


def check_consumer_options(options: Mapping[str, Any]) -> None:
    """Validate AIOKafkaConsumer keyword arguments by name, then by type and value."""
    check_options("stream", options, CONSUMER_OPTIONS)
    reset = options.get("auto_offset_reset", "latest")
    if reset not in AUTO_OFFSET_RESET_VALUES:
        raise invalid("auto_offset_reset", reset, f"one of {AUTO_OFFSET_RESET_VALUES}")
    check_option_values(options)
    session = options.get("session_timeout_ms")
    heartbeat = options.get("heartbeat_interval_ms")
    if heartbeat is not None and heartbeat >= (session or DEFAULT_SESSION_TIMEOUT_MS):
        given = "" if session is not None else " (the default)"
        raise ConfigError(
            f"heartbeat_interval_ms={heartbeat} must be below session_timeout_ms="
            f"{session or DEFAULT_SESSION_TIMEOUT_MS}{given}: the member would be evicted "
            "between two heartbeats; Kafka recommends at most a third of it"
        )


def heartbeat_interval_ms(options: Mapping[str, Any]) -> int:
    """The heartbeat interval every backend uses for these consumer options.

    The one given, else aiokafka's default of 3 s, lowered to a third of
    ``session_timeout_ms`` when the session is shorter than 9 s: a heartbeat
    left at 3 s with a 1.5 s session would let the group evict the member
    between two heartbeats.
    """
    given = options.get("heartbeat_interval_ms")
    if given is not None:
        return int(given)
    session = options.get("session_timeout_ms") or DEFAULT_SESSION_TIMEOUT_MS
    return min(DEFAULT_HEARTBEAT_INTERVAL_MS, max(1, int(session) // 3))


def check_producer_options(options: Mapping[str, Any]) -> None:
    check_options("producer", options, PRODUCER_OPTIONS)
    check_option_values(options)


def metadata_max_age_ms(options: Mapping[str, Any], *, pattern: bool) -> int:
    """The metadata refresh period every backend uses: the one given, else 5 min, or
    :data:`PATTERN_METADATA_MAX_AGE_MS` for a pattern subscription, so that a
    matching topic created after start is consumed within seconds."""
    given = options.get("metadata_max_age_ms")
    if given is not None:
        return int(given)
    return PATTERN_METADATA_MAX_AGE_MS if pattern else DEFAULT_METADATA_MAX_AGE_MS
