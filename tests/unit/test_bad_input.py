"""Bad input fails where it is written, with an error naming the parameter and what is accepted."""

from __future__ import annotations

import logging

import pytest

from kstreams import ConsumerRecord, Stream, StreamErrorPolicy, create_engine
from kstreams.backends import Aiokafka
from kstreams.exceptions import (
    InvalidArgumentError,
    KafkaConnectionError,
    KStreamsError,
    SerializationError,
    UnknownOptionError,
)


async def handle(cr: ConsumerRecord[bytes, bytes]) -> None:
    """A handler for the declarations below."""


def test_stream_decorator_without_parentheses_is_a_type_error() -> None:
    """``@engine.stream`` with no topics raises at once instead of registering nothing."""
    engine = create_engine(backend="memory")
    expected = r"topics=handle is a function.*@engine\.stream\('my-topic'"
    with pytest.raises(TypeError, match=expected):
        engine.stream(handle)  # what the bare decorator does
    assert engine.streams == []


@pytest.mark.parametrize(
    ("topics", "shown"),
    [(None, "topics=None (NoneType)"), (9, "topics=9 (int)"), (b"t", "topics=b't' (bytes)")],
)
def test_topics_that_are_not_names_are_rejected(topics: object, shown: str) -> None:
    """topics=None/int/bytes name the parameter, the value and what is accepted."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError) as caught:
        engine.stream(topics)  # type: ignore[arg-type]
    assert shown in str(caught.value)
    assert "a topic name (str) or a list of topic names" in str(caught.value)


def test_empty_or_mixed_topic_lists_are_rejected() -> None:
    """An empty list and a list holding a non-str fail, on the decorator and on Stream()."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match="at least one topic name"):
        engine.stream([])
    with pytest.raises(InvalidArgumentError, match=r"holds 3 \(int\)"):
        Stream(["a", 3], func=handle)  # type: ignore[list-item]


def test_bootstrap_servers_must_be_text() -> None:
    """bootstrap_servers=9092 fails at create_engine and at the decorator, not at start."""
    with pytest.raises(InvalidArgumentError, match=r"bootstrap_servers=9092 \(int\)"):
        create_engine(backend="memory", producer_options={"bootstrap_servers": 9092})
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match="'host:port' string"):
        engine.stream("t", bootstrap_servers=9092)


def test_backend_settings_bootstrap_servers_are_checked_by_create_engine() -> None:
    """A backend whose bootstrap_servers is not text is refused when the engine is created."""
    try:
        backend = Aiokafka(bootstrap_servers=9092)  # type: ignore[arg-type]
    except KStreamsError:
        return  # the settings checked it themselves, which is as good
    with pytest.raises(InvalidArgumentError, match="bootstrap_servers=9092"):
        create_engine(backend=backend)


@pytest.mark.parametrize("given", ["restart", "RESTART", "Restart", StreamErrorPolicy.RESTART])
def test_error_policy_names_are_accepted_in_any_case(given: object) -> None:
    """error_policy="restart" means StreamErrorPolicy.RESTART."""
    engine = create_engine(backend="memory")
    stream = engine.stream("t", error_policy=given)(handle)  # type: ignore[arg-type]
    assert stream.error_policy is StreamErrorPolicy.RESTART


def test_an_unknown_error_policy_names_the_parameter() -> None:
    """error_policy="reboot" lists the policies it could have been."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError) as caught:
        engine.stream("t", error_policy="reboot")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("error_policy='reboot' (str) is not valid")
    assert "StreamErrorPolicy.RESTART" in message
    assert isinstance(caught.value, ValueError)


def test_an_option_of_the_wrong_type_is_not_called_unknown() -> None:
    """session_timeout_ms="1500" is a wrong type (InvalidArgumentError), not an unknown option."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError) as caught:
        engine.stream("t", session_timeout_ms="1500")
    assert not isinstance(caught.value, UnknownOptionError)
    assert str(caught.value) == (
        "session_timeout_ms='1500' (str) is not valid: expected a positive int"
    )


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"enable_auto_commit": "yes"}, "True or False"),
        ({"max_poll_records": True}, "a positive int"),
        ({"isolation_level": "committed"}, "'read_uncommitted', 'read_committed'"),
        ({"client_id": 7}, "a str"),
        ({"value_deserializer": "json"}, "a callable"),
        ({"fetch_max_wait_ms": -1}, "an int >= 0"),
    ],
)
def test_consumer_option_values_are_checked_by_type(
    options: dict[str, object], accepted: str
) -> None:
    """Each option value is checked against its type when the stream is declared."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match=f"expected .*{accepted}"):
        engine.stream("t", **options)


def test_producer_option_values_are_checked_by_create_engine() -> None:
    """producer_options linger_ms="5" and acks=2 fail at create_engine."""
    with pytest.raises(InvalidArgumentError, match=r"linger_ms='5' \(str\)"):
        create_engine(backend="memory", producer_options={"linger_ms": "5"})
    with pytest.raises(InvalidArgumentError, match=r"acks=2 .*one of 0, 1, -1, 'all'"):
        create_engine(backend="memory", producer_options={"acks": 2})


def test_codecs_without_their_method_are_rejected() -> None:
    """A serializer without serialize() (or deserializer without deserialize()) fails early."""
    with pytest.raises(InvalidArgumentError, match=r"serializer=.*async serialize"):
        create_engine(backend="memory", serializer=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"deserializer=.*async deserialize"):
        create_engine(backend="memory", deserializer=len)  # type: ignore[arg-type]
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match="deserializer="):
        engine.stream("t", deserializer="json")  # type: ignore[arg-type]


def test_decorating_something_that_is_not_a_function_fails() -> None:
    """@engine.stream("t") above a non-callable names what it got."""
    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match=r"func=42 \(int\)"):
        engine.stream("t")(42)  # type: ignore[arg-type]


async def test_sending_a_dict_without_a_serializer_is_a_kstreams_error() -> None:
    """A dict without a serializer raises SerializationError (a KStreamsError, a TypeError)."""
    engine = create_engine(backend="memory")
    await engine.start()
    try:
        with pytest.raises(SerializationError, match="value must be bytes, str or None") as caught:
            await engine.send("t", value={"a": 1})
    finally:
        await engine.stop()
    assert isinstance(caught.value, KStreamsError)
    assert isinstance(caught.value, TypeError)
    assert "JsonSerializer" in str(caught.value)


def test_a_client_class_name_is_not_repeated_in_the_message() -> None:
    """A translated client message starting with the same class name loses that prefix."""
    error = KafkaConnectionError("KafkaConnectionError: Unable to bootstrap from localhost:1")
    assert str(error) == "Unable to bootstrap from localhost:1"
    assert str(KafkaConnectionError("other: text")) == "other: text"


async def test_one_stream_is_logged_in_the_singular(caplog: pytest.LogCaptureFixture) -> None:
    """The start log says "1 stream", not "1 streams"."""
    engine = create_engine(title="one", backend="memory")
    engine.stream("t", group_id="g")(handle)
    with caplog.at_level(logging.INFO, logger="kstreams.engine"):
        await engine.start()
        await engine.stop()
    assert "engine 'one' started with 1 stream" in caplog.text
    assert "1 streams" not in caplog.text


def test_a_middleware_class_given_without_middleware_is_named() -> None:
    """middlewares=[DeadLetterMiddleware] says to wrap it in Middleware(...)."""
    from kstreams import DeadLetterMiddleware

    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match=r"Middleware\(DeadLetterMiddleware, \*\*opt"):
        engine.stream("t", middlewares=[DeadLetterMiddleware])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="a list of Middleware"):
        engine.stream("t", middlewares="dlq")  # type: ignore[arg-type]


def test_middleware_option_mistakes_are_kstreams_errors() -> None:
    """A wrong Middleware option is an InvalidArgumentError, still a TypeError/ValueError."""
    from kstreams import DeadLetterMiddleware, Middleware

    with pytest.raises(InvalidArgumentError, match="unexpected keyword argument 'retrys'"):
        Middleware(DeadLetterMiddleware, topic="dlq", retrys=3)
    with pytest.raises(ValueError, match="retries must be an int >= 0, got -1"):
        Middleware(DeadLetterMiddleware, topic="dlq", retries=-1)


def test_stream_argument_types_are_checked() -> None:
    """get_many, rebalance_listener and initial_offsets of the wrong type fail at decoration."""
    from kstreams import GetMany

    engine = create_engine(backend="memory")
    with pytest.raises(InvalidArgumentError, match=r"get_many=100 \(int\)"):
        engine.stream("t", get_many=100)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="a RebalanceListener instance"):
        engine.stream("t", rebalance_listener=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="a list of TopicPartitionOffset"):
        engine.stream("t", initial_offsets=[("t", 0, 5)])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="GetMany max_records must be positive"):
        GetMany(max_records=0)


def test_a_backend_that_is_not_one_is_named() -> None:
    """create_engine(backend=9092) lists what a backend can be."""
    with pytest.raises(InvalidArgumentError, match=r"backend=9092 \(int\).*'memory'"):
        create_engine(backend=9092)  # type: ignore[arg-type]
