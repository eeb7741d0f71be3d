"""Checks of what users pass in, run when a stream is declared or an engine is created.

Each failure is an ``InvalidArgumentError`` (a ``TypeError`` and a
``ValueError`` too) that names the parameter, shows the value, and says what
is accepted, so the traceback points at the line that holds the mistake
rather than at a client deep inside ``start()``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from kstreams.exceptions import InvalidArgumentError

E = TypeVar("E", bound=enum.Enum)

#: Options whose value is a count or a duration: an int, > 0.
POSITIVE_INT_OPTIONS = frozenset(
    {
        "auto_commit_interval_ms",
        "connections_max_idle_ms",
        "fetch_max_bytes",
        "fetch_min_bytes",
        "heartbeat_interval_ms",
        "max_batch_size",
        "max_partition_fetch_bytes",
        "max_poll_interval_ms",
        "max_poll_records",
        "max_request_size",
        "metadata_max_age_ms",
        "rebalance_timeout_ms",
        "request_timeout_ms",
        "session_timeout_ms",
        "transaction_timeout_ms",
    }
)

#: Durations where 0 means "do not wait".
NON_NEGATIVE_INT_OPTIONS = frozenset(
    {"consumer_timeout_ms", "fetch_max_wait_ms", "linger_ms", "retry_backoff_ms"}
)

BOOL_OPTIONS = frozenset(
    {"check_crcs", "enable_auto_commit", "enable_idempotence", "exclude_internal_topics"}
)

STR_OPTIONS = frozenset(
    {
        "client_id",
        "client_rack",
        "group_id",
        "group_instance_id",
        "sasl_kerberos_domain_name",
        "sasl_kerberos_service_name",
        "sasl_plain_password",
        "sasl_plain_username",
        "transactional_id",
    }
)

CALLABLE_OPTIONS = frozenset(
    {"key_deserializer", "key_serializer", "partitioner", "value_deserializer", "value_serializer"}
)

CHOICE_OPTIONS: dict[str, tuple[Any, ...]] = {
    "acks": (0, 1, -1, "all"),
    "compression_type": ("gzip", "snappy", "lz4", "zstd"),
    "isolation_level": ("read_uncommitted", "read_committed"),
    "security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "sasl_mechanism": ("PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"),
}


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def invalid(parameter: str, value: Any, accepted: str) -> InvalidArgumentError:
    """The error for ``parameter=value``: what was given and what is accepted."""
    return InvalidArgumentError(f"{parameter}={_shown(value)} is not valid: expected {accepted}")


def check_bootstrap_servers(value: Any, parameter: str = "bootstrap_servers") -> None:
    """A ``"host:port[,host:port]"`` string or a list of ``"host:port"`` strings."""
    accepted = "a 'host:port' string (comma-separated for several) or a list of them"
    if isinstance(value, str):
        if not value.strip():
            raise invalid(parameter, value, accepted)
        return
    if (
        isinstance(value, Sequence)
        and value
        and all(isinstance(item, str) and item.strip() for item in value)
    ):
        return
    raise invalid(parameter, value, accepted)


def check_option_values(options: Mapping[str, Any]) -> None:
    """The type (and, for the few with a fixed set, the value) of each client option.

    ``None`` is accepted everywhere: it leaves the client's default.
    """
    for name, value in options.items():
        if value is None:
            continue
        if name == "bootstrap_servers":
            check_bootstrap_servers(value)
        elif name in POSITIVE_INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise invalid(name, value, "a positive int")
        elif name in NON_NEGATIVE_INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid(name, value, "an int >= 0")
        elif name in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise invalid(name, value, "True or False")
        elif name in STR_OPTIONS:
            if not isinstance(value, str):
                raise invalid(name, value, "a str")
        elif name in CALLABLE_OPTIONS:
            if not callable(value):
                raise invalid(name, value, "a callable")
        elif name in CHOICE_OPTIONS:
            choices = CHOICE_OPTIONS[name]
            if isinstance(value, bool) or value not in choices:
                raise invalid(name, value, "one of " + ", ".join(map(repr, choices)))


def check_topics(topics: Any) -> list[str]:
    """A topic name or a sequence of them, as the list a stream keeps."""
    accepted = "a topic name (str) or a list of topic names"
    if isinstance(topics, str):
        if not topics:
            raise invalid("topics", topics, accepted)
        return [topics]
    if callable(topics):
        name = getattr(topics, "__qualname__", repr(topics))
        raise InvalidArgumentError(
            f"topics={name} is a function: the decorator needs the topics first, as in "
            f"@engine.stream('my-topic') above 'async def {getattr(topics, '__name__', 'f')}'"
        )
    if isinstance(topics, bytes | bytearray) or not isinstance(topics, Iterable):
        raise invalid("topics", topics, accepted)
    names = list(topics)
    if not names:
        raise invalid("topics", topics, "at least one topic name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(
                f"topics={topics!r} holds {_shown(name)}: every topic name must be a non-empty str"
            )
    return names


def check_enum(parameter: str, value: Any, enum_type: type[E]) -> E:
    """A member of ``enum_type`` from itself, its value, or its name in any case."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        wanted = value.strip().upper()
        for member in enum_type:
            if member.name == wanted or str(member.value).upper() == wanted:
                return member
    accepted = ", ".join(f"{enum_type.__name__}.{m.name}" for m in enum_type)
    names = ", ".join(repr(m.name.lower()) for m in enum_type)
    raise invalid(parameter, value, f"one of {accepted} (or the names {names}, in any case)")


def check_handler(func: Any) -> None:
    """What ``@engine.stream(...)`` decorates must be a function."""
    if not callable(func):
        raise invalid("func", func, "an 'async def' function to handle the records")


def check_codec(parameter: str, value: Any, method: str) -> None:
    """A serializer (or deserializer) is an object with an async ``method``, or None."""
    if value is None:
        return
    attr: Callable[..., Any] | None = getattr(value, method, None)
    if not callable(attr):
        raise invalid(parameter, value, f"None or an object with an async {method}() method")


def check_stream_arguments(
    topics: Any,
    error_policy: Any,
    deserializer: Any,
    *,
    middlewares: Any = (),
    get_many: Any = None,
    rebalance_listener: Any = None,
    initial_offsets: Any = None,
) -> None:
    """What ``engine.stream(...)`` can check before it sees the handler."""
    from kstreams.middleware import BaseMiddleware, Middleware
    from kstreams.policies import StreamErrorPolicy
    from kstreams.producer import DEFAULT
    from kstreams.records import TopicPartitionOffset
    from kstreams.types import GetMany

    check_topics(topics)
    check_enum("error_policy", error_policy, StreamErrorPolicy)
    if deserializer is not DEFAULT:
        check_codec("deserializer", deserializer, "deserialize")
    if isinstance(middlewares, Middleware | str | bytes) or not isinstance(middlewares, Sequence):
        raise invalid("middlewares", middlewares, "a list of Middleware(cls, **options)")
    for middleware in middlewares:
        if isinstance(middleware, type) and issubclass(middleware, BaseMiddleware):
            raise InvalidArgumentError(
                f"middlewares holds the class {middleware.__name__}: wrap it as "
                f"Middleware({middleware.__name__}, **options)"
            )
        if not isinstance(middleware, Middleware):
            raise invalid("middlewares", middleware, "Middleware(cls, **options) items")
    if get_many is not None and not isinstance(get_many, GetMany):
        raise invalid("get_many", get_many, "None or GetMany(max_records=..., timeout_ms=...)")
    if rebalance_listener is not None and not all(
        callable(getattr(rebalance_listener, name, None))
        for name in ("on_partitions_assigned", "on_partitions_revoked")
    ):
        raise invalid(
            "rebalance_listener", rebalance_listener, "None or a RebalanceListener instance"
        )
    if initial_offsets is not None and (
        isinstance(initial_offsets, str | bytes)
        or not isinstance(initial_offsets, Iterable)
        or not all(isinstance(tpo, TopicPartitionOffset) for tpo in initial_offsets)
    ):
        raise invalid("initial_offsets", initial_offsets, "None or a list of TopicPartitionOffset")


def check_engine_arguments(backend: Any, serializer: Any, deserializer: Any) -> None:
    """What ``create_engine`` checks: the backend, the codecs, where a real backend connects."""
    if not all(callable(getattr(backend, m, None)) for m in ("create_consumer", "create_producer")):
        raise invalid(
            "backend",
            backend,
            "a name ('aiokafka', 'confluent', 'memory'), None, or settings such as "
            "Aiokafka(...), Confluent(...), Memory(...)",
        )
    servers = getattr(backend, "bootstrap_servers", None)
    if servers is not None:
        check_bootstrap_servers(servers)
    check_codec("serializer", serializer, "serialize")
    check_codec("deserializer", deserializer, "deserialize")


def plural(count: int, noun: str) -> str:
    """``"1 stream"``, ``"2 streams"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
