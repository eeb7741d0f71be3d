"""Producing on the memory backend: serializers, raw bytes, headers, send_many, producer options."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Mapping
from typing import Any

import pytest

from kstreams import DEFAULT, BatchEvent, ConsumerRecord, Stream, create_engine
from kstreams.backends import Memory
from kstreams.backends.memory import MemoryCluster
from kstreams.exceptions import ConfigError, RecordTooLargeError
from kstreams.ports import ProducerPort
from kstreams.records import RecordMetadata, TopicPartition


class JsonSerializer:
    """Records what it was called with; adds a content-type header."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any] | None, dict[str, Any] | None]] = []

    async def serialize(
        self,
        payload: Any,
        headers: dict[str, Any] | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> bytes:
        self.calls.append((payload, dict(headers or {}), serializer_kwargs))
        if headers is not None:
            headers["content-type"] = "application/json"
        indent = (serializer_kwargs or {}).get("indent")
        return json.dumps(payload, indent=indent).encode()


class UpperSerializer:
    async def serialize(
        self,
        payload: Any,
        headers: dict[str, Any] | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> bytes:
        return str(payload).upper().encode()


def only_record(cluster: MemoryCluster, topic: str) -> Any:
    (record,) = cluster.records(TopicPartition(topic, 0))
    return record


async def test_engine_serializer_is_the_default_and_a_call_can_override_it() -> None:
    """The engine's serializer runs by default, with serializer_kwargs; a per-call one wins."""
    cluster = MemoryCluster()
    serializer = JsonSerializer()
    engine = create_engine(backend=Memory(cluster=cluster), serializer=serializer)
    await engine.start()
    await engine.send("a", value={"n": 1}, headers={"h": "v"}, serializer_kwargs={"indent": 1})
    await engine.send("b", value="quiet", serializer=UpperSerializer())
    await engine.send("c", value={"n": 2}, serializer=DEFAULT)
    await engine.stop()
    assert serializer.calls == [({"n": 1}, {"h": "v"}, {"indent": 1}), ({"n": 2}, {}, None)]
    a = only_record(cluster, "a")
    assert a.value == b'{\n "n": 1\n}'
    assert list(a.headers) == [("h", b"v"), ("content-type", b"application/json")]
    assert only_record(cluster, "b").value == b"QUIET"
    assert only_record(cluster, "c").value == b'{"n": 2}'


async def test_serializer_none_sends_raw_bytes_despite_a_default() -> None:
    """serializer=None sends bytes as they are and str as UTF-8, skipping the default."""
    cluster = MemoryCluster()
    serializer = JsonSerializer()
    engine = create_engine(backend=Memory(cluster=cluster), serializer=serializer)
    await engine.start()
    await engine.send("raw", value=b"\x00\xff", key=b"k", serializer=None)
    await engine.send("text", value="héllo", key="clé", serializer=None)
    with pytest.raises(TypeError, match="value must be bytes, str or None"):
        await engine.send("raw", value={"not": "bytes"}, serializer=None)
    await engine.stop()
    assert serializer.calls == []
    raw = only_record(cluster, "raw")
    assert (raw.key, raw.value) == (b"k", b"\x00\xff")
    text = only_record(cluster, "text")
    assert (text.key, text.value) == ("clé".encode(), "héllo".encode())


async def test_header_values_given_as_str_are_utf8_encoded() -> None:
    """Headers as a mapping or as pairs (keys may repeat) arrive as bytes, in order."""
    cluster = MemoryCluster()
    engine = create_engine(backend=Memory(cluster=cluster))
    await engine.start()
    await engine.send("m", value=b"1", headers={"a": "é", "b": b"\x01"})
    await engine.send("p", value=b"2", headers=[("x", "1"), ("x", b"2")])
    await engine.stop()
    assert list(only_record(cluster, "m").headers) == [("a", "é".encode()), ("b", b"\x01")]
    assert list(only_record(cluster, "p").headers) == [("x", b"1"), ("x", b"2")]


class RecordingOptionsBackend:
    """A memory backend that remembers the options its producers were built with."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.inner = Memory(cluster=cluster)
        self.producer_options: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "memory"

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> Any:
        return self.inner.create_consumer(group_id=group_id, options=options)

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        self.producer_options.append(dict(options))
        return self.inner.create_producer(options)


async def test_producer_options_reach_the_backend() -> None:
    """acks, compression, linger, idempotence and transactional id pass through unchanged."""
    backend = RecordingOptionsBackend(MemoryCluster())
    options = {
        "acks": "all",
        "compression_type": "gzip",
        "linger_ms": 20,
        "enable_idempotence": True,
        "transactional_id": "tx-1",
        "client_id": "billing",
    }
    engine = create_engine(backend=backend, producer_options=options)
    await engine.start()
    # No send: a transactional producer refuses sends outside a transaction, as Kafka's do.
    await engine.stop()
    assert backend.producer_options == [options]


async def test_key_and_value_serializer_options_are_applied_once_by_the_core() -> None:
    """aiokafka's key_serializer/value_serializer run in the core, never in the client, so
    a value is serialized once; serializer=None skips them for raw bytes."""
    cluster = MemoryCluster()
    backend = RecordingOptionsBackend(cluster)
    calls: list[Any] = []

    def value_serializer(value: Any) -> bytes:
        calls.append(value)
        return json.dumps(value).encode()

    engine = create_engine(
        backend=backend,
        producer_options={"value_serializer": value_serializer, "key_serializer": str.encode},
    )
    await engine.start()
    await engine.send("t", value={"n": 1}, key="k")
    await engine.send("t", value=b"raw", key=b"rk", serializer=None)
    await engine.send("t", value="shout", key="k2", serializer=UpperSerializer())
    await engine.stop()
    assert backend.producer_options == [{}]
    assert calls == [{"n": 1}]
    records = cluster.records(TopicPartition("t", 0))
    assert [(r.key, r.value) for r in records] == [
        (b"k", b'{"n": 1}'),
        (b"rk", b"raw"),
        (b"k2", b"SHOUT"),
    ]


def test_a_serializer_and_a_value_serializer_together_are_a_config_error() -> None:
    """Two default value serializers would be ambiguous; create_engine says so."""
    with pytest.raises(ConfigError, match="not both"):
        create_engine(
            backend="memory",
            serializer=UpperSerializer(),
            producer_options={"value_serializer": str.encode},
        )


async def test_send_many_returns_metadata_in_order_with_each_events_key_and_headers() -> None:
    """send_many produces every event to the partition given, in order, serialized."""
    cluster = MemoryCluster()
    cluster.create_topic("many", partitions=3)
    engine = create_engine(backend=Memory(cluster=cluster), serializer=UpperSerializer())
    await engine.start()
    events = [
        BatchEvent(value="a", key=b"1", headers={"i": "0"}),
        BatchEvent(value="b"),
        BatchEvent(value="c", key=b"3", headers=[("i", b"2")]),
    ]
    metadata = await engine.send_many("many", batch_events=events, partition=2)
    await engine.stop()
    assert [(m.topic, m.partition, m.offset) for m in metadata] == [
        ("many", 2, 0),
        ("many", 2, 1),
        ("many", 2, 2),
    ]
    records = cluster.records(TopicPartition("many", 2))
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (b"1", b"A", [("i", b"0")]),
        (None, b"B", []),
        (b"3", b"C", [("i", b"2")]),
    ]


class GatedProducer:
    """A producer port whose acknowledgements come only once ``expected`` sends are enqueued:
    a caller awaiting each send before the next would wait forever."""

    def __init__(self, inner: ProducerPort, expected: int) -> None:
        self._inner = inner
        self._expected = expected
        self.sends = 0
        self._all_enqueued = asyncio.Event()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Awaitable[RecordMetadata]:
        delivery = await self._inner.send(topic, *args, **kwargs)
        self.sends += 1
        if self.sends == self._expected:
            self._all_enqueued.set()

        async def acknowledged() -> RecordMetadata:
            await self._all_enqueued.wait()
            return await delivery

        return acknowledged()


class GatedBackend(RecordingOptionsBackend):
    def __init__(self, cluster: MemoryCluster, expected: int) -> None:
        super().__init__(cluster)
        self.expected = expected
        self.producer: GatedProducer | None = None

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        self.producer = GatedProducer(self.inner.create_producer(options), self.expected)
        return self.producer  # type: ignore[return-value]


async def test_send_many_enqueues_everything_before_awaiting_an_acknowledgement() -> None:
    """One round trip per batch: all records are enqueued before any acknowledgement is awaited."""
    cluster = MemoryCluster()
    backend = GatedBackend(cluster, expected=50)
    engine = create_engine(backend=backend)
    await engine.start()
    events = [BatchEvent(value=b"%d" % i) for i in range(50)]
    metadata = await asyncio.wait_for(engine.send_many("gated", events), 5)
    await engine.stop()
    assert [m.offset for m in metadata] == list(range(50))


async def test_send_many_failing_midway_still_delivers_what_was_enqueued() -> None:
    """A record that cannot be enqueued raises; the ones before it are delivered, not dropped."""
    cluster = MemoryCluster()
    engine = create_engine(
        backend=Memory(cluster=cluster), producer_options={"max_request_size": 200}
    )
    await engine.start()
    events = [BatchEvent(value=b"ok-0"), BatchEvent(value=b"ok-1"), BatchEvent(value=b"x" * 500)]
    with pytest.raises(RecordTooLargeError):
        await engine.send_many("partial", events)
    await engine.stop()
    assert [r.value for r in cluster.records(TopicPartition("partial", 0))] == [b"ok-0", b"ok-1"]


async def test_streams_use_the_engine_deserializer_unless_given_none_for_raw_bytes() -> None:
    """A stream inherits the engine's deserializer; deserializer=None reads the raw bytes."""

    class Decode:
        async def deserialize(
            self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
        ) -> ConsumerRecord[Any, Any]:
            return dataclasses.replace(consumer_record, value=json.loads(consumer_record.value))

    cluster = MemoryCluster()
    cluster.append("j", b'{"a": 1}')
    engine = create_engine(backend=Memory(cluster=cluster), deserializer=Decode())
    got: dict[str, Any] = {}
    done = asyncio.Event()

    async def remember(name: str, cr: ConsumerRecord[Any, Any]) -> None:
        got[name] = cr.value
        if len(got) == 3:
            done.set()

    @engine.stream("j", group_id="decoded", auto_offset_reset="earliest")
    async def decoded(cr: ConsumerRecord[bytes, Any]) -> None:
        await remember("decoded", cr)

    @engine.stream("j", group_id="raw", auto_offset_reset="earliest", deserializer=None)
    async def raw(cr: ConsumerRecord[bytes, bytes]) -> None:
        await remember("raw", cr)

    async def added(cr: ConsumerRecord[bytes, Any]) -> None:
        await remember("added", cr)

    engine.add_stream(Stream("j", func=added, group_id="added", auto_offset_reset="earliest"))
    await engine.start()
    await asyncio.wait_for(done.wait(), 5)
    await engine.stop()
    assert got == {"decoded": {"a": 1}, "raw": b'{"a": 1}', "added": {"a": 1}}


class SendAndWaitPort:
    """A memory producer with a ``send_and_wait``, recording which of the two each send took."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self.inner = inner
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Awaitable[RecordMetadata]:
        self.calls.append("send")
        return await self.inner.send(topic, *args, **kwargs)  # type: ignore[no-any-return]

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> RecordMetadata:
        self.calls.append("send_and_wait")
        return await (await self.inner.send(topic, *args, **kwargs))  # type: ignore[no-any-return]


class SendAndWaitBackend(RecordingOptionsBackend):
    def __init__(self, cluster: MemoryCluster) -> None:
        super().__init__(cluster)
        self.calls: list[str] = []

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        port = SendAndWaitPort(super().create_producer(options), self.calls)
        return port  # type: ignore[return-value]


async def test_engine_send_goes_through_the_ports_send_and_wait_when_it_has_one() -> None:
    """engine.send uses send_and_wait, with the record serialized as by send: same bytes,
    key, headers and metadata, and the last offsets kept."""
    cluster = MemoryCluster()
    backend = SendAndWaitBackend(cluster)

    def key_serializer(key: str | None) -> bytes | None:
        return None if key is None else key.encode()

    engine = create_engine(backend=backend, producer_options={"key_serializer": key_serializer})
    await engine.start()
    first = await engine.send("saw", value=b"raw")
    second = await engine.send("saw", value="text", key="k", headers={"h": "v"})
    gathered = await asyncio.gather(*(engine.send("saw", value=b"%d" % i) for i in range(5)))
    offsets = dict(engine.producer.last_offsets)
    await engine.stop()
    assert backend.calls == ["send_and_wait"] * 7
    assert [m.offset for m in (first, second, *gathered)] == list(range(7))
    assert isinstance(first, RecordMetadata)
    records = cluster.records(TopicPartition("saw", 0))
    assert [(r.key, r.value) for r in records[:2]] == [(None, b"raw"), (b"k", b"text")]
    assert list(records[1].headers) == [("h", b"v")]
    assert offsets == {("saw", 0): 6}


async def test_engine_send_goes_through_a_wrapped_enqueue_even_with_send_and_wait() -> None:
    """With Producer.enqueue wrapped on the instance (as kstreams.opentelemetry does),
    engine.send still calls it, so nothing it records is skipped."""
    backend = SendAndWaitBackend(MemoryCluster())
    engine = create_engine(backend=backend)
    await engine.start()
    producer = engine.producer
    enqueued: list[str] = []
    enqueue = producer.enqueue

    async def recording_enqueue(topic: str, *args: Any, **kwargs: Any) -> Any:
        enqueued.append(topic)
        return await enqueue(topic, *args, **kwargs)

    producer.enqueue = recording_enqueue  # type: ignore[method-assign]
    metadata = await engine.send("wrapped", value=b"v")
    await engine.stop()
    assert enqueued == ["wrapped"]
    assert backend.calls == ["send"]
    assert metadata.offset == 0
