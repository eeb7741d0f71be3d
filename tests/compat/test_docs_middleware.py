"""kpn/kstreams' "Middleware" and "Serialization" pages, as a migrating user runs them."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest

from kstreams import ConsumerRecord, consts, create_engine, middleware
from kstreams.middleware.middleware import ExceptionMiddleware, MiddlewareProtocol
from kstreams.test_utils import TestStreamClient
from kstreams.types import Headers


async def test_a_middleware_runs_before_the_handler() -> None:
    """A BaseMiddleware subclass sees each record before the handler, and passes it on."""
    saved: list[bytes] = []
    handled: list[bytes] = []

    class ElasticMiddleware(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> typing.Any:
            saved.append(cr.value)
            return await self.next_call(cr)

    stream_engine = create_engine(title="my-stream-engine")
    middlewares = [middleware.Middleware(ElasticMiddleware)]

    @stream_engine.stream("kstreams-topic", group_id="g", middlewares=middlewares)
    async def processor(cr: ConsumerRecord) -> None:
        assert saved[-1] == cr.value
        handled.append(cr.value)

    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("kstreams-topic", value=b"e1")
    assert saved == handled == [b"e1"]


async def test_a_middleware_with_options_dead_letters_value_errors() -> None:
    """`Middleware(DLQMiddleware, topic=...)`: options reach `__init__`, `self.send` produces."""

    class DLQMiddleware(middleware.BaseMiddleware):
        def __init__(self, *, topic: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.topic = topic

        async def __call__(self, cr: ConsumerRecord) -> Any:
            try:
                return await self.next_call(cr)
            except ValueError:
                await self.send(self.topic, key=cr.key, value=cr.value)

    stream_engine = create_engine(title="my-stream-engine")
    middlewares = [middleware.Middleware(DLQMiddleware, topic="kstreams-dlq-topic")]

    @stream_engine.stream("kstreams-topic", group_id="g", middlewares=middlewares)
    async def processor(cr: ConsumerRecord) -> None:
        if cr.value == b"joker":
            raise ValueError("Joker received...")

    client = TestStreamClient(stream_engine, topics=["kstreams-dlq-topic"])
    async with client:
        await client.send("kstreams-topic", value=b"fine", key="k0")
        await client.send("kstreams-topic", value=b"joker", key="k1")
        dead = await client.get_event(topic_name="kstreams-dlq-topic")
        assert (dead.key, dead.value) == (b"k1", b"joker")
    assert client.get_topic("kstreams-topic").committed("g") == {0: 2}


async def test_the_chain_runs_in_the_order_given() -> None:
    """DLQ, Elastic, S3: each wraps the next; the record reaches Elastic and S3 even if the
    handler fails, and the DLQ catches it."""
    calls: list[str] = []

    class DLQMiddleware(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            try:
                return await self.next_call(cr)
            except ValueError:
                calls.append(f"dlq {cr.value!r}")

    class ElasticMiddleware(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            calls.append("elastic")
            return await self.next_call(cr)

    class S3Middleware(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            calls.append("s3")
            return await self.next_call(cr)

    middlewares = [
        middleware.Middleware(DLQMiddleware),
        middleware.Middleware(ElasticMiddleware),
        middleware.Middleware(S3Middleware),
    ]
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("kstreams-topic", group_id="g", middlewares=middlewares)
    async def processor(cr: ConsumerRecord) -> None:
        if cr.value == b"event_2":
            raise ValueError("Error from stream...")
        calls.append("db")

    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("kstreams-topic", value=b"event_1")
        await client.send("kstreams-topic", value=b"event_2")
    assert calls == ["elastic", "s3", "db", "elastic", "s3", "dlq b'event_2'"]


async def test_a_middleware_return_value_goes_back_up_the_chain() -> None:
    """What `__call__` returns is what the previous middleware's `next_call` returned."""
    returned: list[Any] = []

    class Outer(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            returned.append(await self.next_call(cr))

    class Inner(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            await self.next_call(cr)
            return f"done {cr.offset}"

    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(
        "t", group_id="g", middlewares=[middleware.Middleware(Outer), middleware.Middleware(Inner)]
    )
    async def processor(cr: ConsumerRecord) -> None: ...

    async with TestStreamClient(stream_engine) as client:
        await client.send("t", value=b"x")
    assert returned == ["done 0"]


async def test_middlewares_have_send_many_and_the_stream() -> None:
    """The MiddlewareProtocol attributes: next_call, send, send_many and stream."""
    from kstreams import BatchEvent

    class Fanout(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            assert self.stream.name == "processor"
            assert self.send_many is not None
            await self.send_many("copies", batch_events=[BatchEvent(value=cr.value)] * 2)
            return await self.next_call(cr)

    protocol_attributes = {"next_call", "send", "stream"}
    assert protocol_attributes <= set(MiddlewareProtocol.__annotations__)
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream("t", group_id="g", middlewares=[middleware.Middleware(Fanout)])
    async def processor(cr: ConsumerRecord) -> None: ...

    client = TestStreamClient(stream_engine)
    async with client:
        await client.send("t", value=b"x")
    assert [r.value for r in client.get_topic("copies").records()] == [b"x", b"x"]


async def test_exception_middleware_leaves_the_error_to_the_policy() -> None:
    """ExceptionMiddleware, placed outermost, lets the stream's error policy handle the error,
    noting the stream and its topics on it."""
    stream_engine = create_engine(title="my-stream-engine")

    @stream_engine.stream(
        "t", group_id="g", middlewares=[middleware.Middleware(ExceptionMiddleware)]
    )
    async def processor(cr: ConsumerRecord) -> None:
        raise ValueError("crash")

    client = TestStreamClient(stream_engine)

    async def run() -> None:
        async with client:
            await client.send("t", value=b"x")

    with pytest.raises(ValueError, match="crash") as info:
        await run()
    assert any("'processor'" in note and "['t']" in note for note in info.value.__notes__)
    assert not processor.running


class JsonSerializer:
    """The serializer of kpn's serialization page."""

    async def serialize(
        self,
        payload: Any,
        headers: Headers | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> bytes:
        return json.dumps(payload).encode()


async def test_a_global_serializer_and_a_content_type_header() -> None:
    """`create_engine(serializer=...)` encodes `send(value=dict)`, with `consts` headers."""
    stream_engine = create_engine(title="my-stream-engine", serializer=JsonSerializer())
    client = TestStreamClient(stream_engine, topics=["local--kstreams"])
    async with client:
        await stream_engine.send(
            "local--kstreams",
            value={"message": "test"},
            headers={"content-type": consts.APPLICATION_JSON},
            key="1",
        )
        record = await client.get_event(topic_name="local--kstreams")
    assert json.loads(record.value) == {"message": "test"}
    assert record.headers == (("content-type", b"application/json"),)
    assert record.key == b"1"


async def test_serializer_none_forces_raw_data() -> None:
    """`send(serializer=None)` sends the bytes as they are, past the global serializer."""
    stream_engine = create_engine(title="my-stream-engine", serializer=JsonSerializer())
    client = TestStreamClient(stream_engine, topics=["dlq--kstreams"])
    async with client:
        await stream_engine.send("dlq--kstreams", value=b"raw", serializer=None)
        record = await client.get_event(topic_name="dlq--kstreams")
    assert record.value == b"raw"


async def test_an_old_style_deserializer_returning_a_new_record() -> None:
    """`create_engine(deserializer=...)`, the deprecated way, hands the handler its result."""

    class JsonDeserializer:
        async def deserialize(self, consumer_record: ConsumerRecord, **kwargs: Any) -> Any:
            data = json.loads(consumer_record.value.decode())
            return dataclasses.replace(consumer_record, value=data)

    stream_engine = create_engine(
        title="my-stream-engine", serializer=JsonSerializer(), deserializer=JsonDeserializer()
    )
    values: list[Any] = []

    @stream_engine.stream("local--kstreams", group_id="g")
    async def hello_stream(cr: ConsumerRecord) -> None:
        values.append(cr.value["message"])

    async with TestStreamClient(stream_engine) as client:
        await client.send("local--kstreams", value={"message": "test"}, key="1")
    assert values == ["test"]


async def test_json_deserializer_middleware_assigns_the_value() -> None:
    """The page's JsonDeserializerMiddleware sets `cr.value = data` and passes the record on."""

    class JsonDeserializerMiddleware(middleware.BaseMiddleware):
        async def __call__(self, cr: ConsumerRecord) -> Any:
            if cr.value is not None:
                data = json.loads(cr.value.decode())
                cr.value = data  # type: ignore[misc]  # frozen today; that is what is pending
            return await self.next_call(cr)

    stream_engine = create_engine(title="my-stream-engine")
    values: list[Any] = []

    @stream_engine.stream(
        "local--kstreams",
        group_id="g",
        middlewares=[middleware.Middleware(JsonDeserializerMiddleware)],
    )
    async def hello_stream(cr: ConsumerRecord) -> None:
        values.append(cr.value)

    client = TestStreamClient(stream_engine)
    async with client:
        await stream_engine.send(
            "local--kstreams", value={"message": "test"}, serializer=JsonSerializer(), key="1"
        )
    assert values == [{"message": "test"}]
    # The log keeps the bytes: a handler mutating its record never changes it.
    assert client.get_topic("local--kstreams").records()[0].value == b'{"message": "test"}'


async def test_old_deserializer_of_the_docstring_assigns_the_value() -> None:
    """kpn's Deserializer docstring example mutates and returns the record it was given."""

    class JsonDeserializer:
        async def deserialize(self, consumer_record: ConsumerRecord, **kwargs: Any) -> Any:
            data = json.loads(consumer_record.value.decode())
            consumer_record.value = data  # type: ignore[misc]
            return consumer_record

    stream_engine = create_engine(title="my-stream-engine", deserializer=JsonDeserializer())
    values: list[Any] = []

    @stream_engine.stream("local--kstreams", group_id="g")
    async def hello_stream(cr: ConsumerRecord) -> None:
        values.append(cr.value)

    async with TestStreamClient(stream_engine) as client:
        await client.send("local--kstreams", value=b'{"a": 1}')
    assert values == [{"a": 1}]


async def test_no_default_uses_the_engine_serializer() -> None:
    """`send(serializer=NO_DEFAULT)`, kpn's spelling of the default, uses the global serializer."""
    from kstreams.serializers import NO_DEFAULT

    stream_engine = create_engine(title="my-stream-engine", serializer=JsonSerializer())
    client = TestStreamClient(stream_engine, topics=["t"])
    async with client:
        await stream_engine.send("t", value={"n": 1}, serializer=NO_DEFAULT)
        record = await client.get_event(topic_name="t")
    assert json.loads(record.value) == {"n": 1}
