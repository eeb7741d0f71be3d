from __future__ import annotations

import pytest

from kstreams import ConsumerRecord, Stream, create_engine
from kstreams.backends import Aiokafka, Confluent, Kafka, Memory, resolve_backend
from kstreams.exceptions import (
    ConfigError,
    DuplicateStreamError,
    HandlerSignatureError,
    InvalidArgumentError,
    StreamError,
    UnknownOptionError,
)


def test_backend_defaults_to_aiokafka_and_env_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without backend= or $KSTREAMS_BACKEND: aiokafka, at $KSTREAMS_BOOTSTRAP_SERVERS."""
    monkeypatch.delenv("KSTREAMS_BACKEND", raising=False)
    monkeypatch.setenv("KSTREAMS_BOOTSTRAP_SERVERS", "kafka-1:9093")
    engine = create_engine()
    assert isinstance(engine.backend, Aiokafka)
    assert engine.backend.bootstrap_servers == "kafka-1:9093"


def test_bootstrap_default_is_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no bootstrap servers anywhere, localhost:9092 is used."""
    monkeypatch.delenv("KSTREAMS_BOOTSTRAP_SERVERS", raising=False)
    assert Aiokafka().bootstrap_servers == "localhost:9092"


@pytest.mark.parametrize(
    ("name", "kind"), [("memory", Memory), ("aiokafka", Aiokafka), ("confluent", Confluent)]
)
def test_backend_env_var_names_the_backend(
    monkeypatch: pytest.MonkeyPatch, name: str, kind: type
) -> None:
    """$KSTREAMS_BACKEND chooses the backend when none is passed."""
    monkeypatch.setenv("KSTREAMS_BACKEND", name)
    assert isinstance(create_engine().backend, kind)


def test_unknown_backend_lists_the_valid_ones() -> None:
    """An unknown backend name is a ConfigError naming every valid one."""
    with pytest.raises(ConfigError, match="aiokafka, confluent, memory"):
        resolve_backend("kafka-python")


def test_instances_pass_through_and_kafka_is_aiokafka() -> None:
    """A backend instance is used as given; Kafka is the aiokafka settings under their old name."""
    settings = Kafka(bootstrap_servers="b:9092")
    assert create_engine(backend=settings).backend is settings
    assert Kafka is Aiokafka


def test_settings_are_validated() -> None:
    """Bad security settings fail when the settings are made, not when connecting."""
    with pytest.raises(ConfigError, match="security_protocol"):
        Aiokafka(security_protocol="TLS")
    with pytest.raises(ConfigError, match="sasl_plain_username"):
        Aiokafka(security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ConfigError, match="ssl_context"):
        Confluent(security_protocol="SSL")


def test_misspelled_consumer_kwarg_fails_at_decoration() -> None:
    """A misspelled AIOKafkaConsumer kwarg raises a TypeError naming it, with a suggestion."""
    engine = create_engine(backend="memory")
    with pytest.raises(UnknownOptionError, match=r"auto_offset_resett.*auto_offset_reset"):

        @engine.stream("t", group_id="g", auto_offset_resett="earliest")
        async def handle(cr: ConsumerRecord) -> None: ...

    assert engine.streams == []


def test_bad_option_values_fail_at_decoration() -> None:
    """auto_offset_reset and interval values are checked before anything connects."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match="auto_offset_reset"):
        engine.stream("t", auto_offset_reset="smallest")
    with pytest.raises(InvalidArgumentError, match="auto_commit_interval_ms"):
        engine.stream("t", auto_commit_interval_ms=0)


def test_misspelled_producer_kwarg_fails_at_create_engine() -> None:
    """producer_options are AIOKafkaProducer kwargs, checked by name."""
    with pytest.raises(UnknownOptionError, match="lingerms"):
        create_engine(backend="memory", producer_options={"lingerms": 5})


def test_duplicate_stream_names_are_rejected() -> None:
    """Two streams with one name in an engine is an error, not a silent replacement."""
    engine = create_engine(backend="memory")

    @engine.stream("t", group_id="g")
    async def handle(cr: ConsumerRecord) -> None: ...

    with pytest.raises(DuplicateStreamError, match="handle"):

        @engine.stream("u", group_id="g")
        async def handle(cr: ConsumerRecord) -> None: ...

    @engine.stream("u", group_id="g", name="other")
    async def handle2(cr: ConsumerRecord) -> None: ...

    assert engine.get_stream("other") is handle2


def test_handler_signatures_are_checked_at_decoration() -> None:
    """Sync functions, unknown annotations and missing records are clear errors up front."""
    engine = create_engine(backend="memory")
    with pytest.raises(HandlerSignatureError, match="async def"):

        @engine.stream("t")
        def sync(cr: ConsumerRecord) -> None: ...

    with pytest.raises(HandlerSignatureError, match="'db'"):

        @engine.stream("t", name="a")
        async def unknown(cr: ConsumerRecord, db: dict) -> None: ...

    with pytest.raises(HandlerSignatureError, match="no ConsumerRecord"):

        @engine.stream("t", name="b")
        async def no_record(stream: Stream, other: Stream) -> None: ...


def test_pattern_streams_take_one_valid_regex() -> None:
    """subscribe_by_pattern needs exactly one compilable pattern."""
    engine = create_engine(backend="memory")
    with pytest.raises(StreamError, match="invalid topic pattern"):
        engine.stream("(", subscribe_by_pattern=True)(_noop)
    with pytest.raises(StreamError, match="one regex"):
        engine.stream(["a", "b"], subscribe_by_pattern=True)(_noop)


async def _noop(cr: ConsumerRecord) -> None:
    return None
