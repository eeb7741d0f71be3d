"""A backend wrapper that records what the core asks of its ports, in order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kstreams.ports import Backend, ConsumerPort, ProducerPort
from kstreams.records import RecordMetadata, TopicPartition


class RecordingConsumer:
    """Forwards to a real consumer port; logs lifecycle and commit calls."""

    def __init__(self, inner: ConsumerPort, log: list[tuple[Any, ...]], name: str) -> None:
        self._inner = inner
        self._log = log
        self._name = name
        self.on_commit: Callable[[Mapping[TopicPartition, int]], None] | None = None
        self.getmany_calls = 0

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def start(self) -> None:
        self._log.append(("consumer.start", self._name))
        await self._inner.start()

    async def stop(self) -> None:
        self._log.append(("consumer.stop", self._name))
        await self._inner.stop()

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> Any:
        self.getmany_calls += 1
        return await self._inner.getmany(timeout_ms=timeout_ms, max_records=max_records)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.on_commit is not None:
            self.on_commit(offsets)
        self._log.append(("consumer.commit", self._name, dict(offsets)))
        await self._inner.commit(offsets)


class RecordingProducer:
    def __init__(self, inner: ProducerPort, log: list[tuple[Any, ...]]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    async def start(self) -> None:
        self._log.append(("producer.start",))
        await self._inner.start()

    async def stop(self) -> None:
        self._log.append(("producer.stop",))
        await self._inner.stop()

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Awaitable[RecordMetadata]:
        return await self._inner.send(topic, *args, **kwargs)


class RecordingBackend:
    """Wraps ``inner``; every port it builds appends to ``log``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.log: list[tuple[Any, ...]] = []
        self.consumers: list[RecordingConsumer] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> Any:
        consumer = RecordingConsumer(
            self.inner.create_consumer(group_id=group_id, options=options),
            self.log,
            f"{group_id}#{len(self.consumers)}",
        )
        self.consumers.append(consumer)
        return consumer

    def create_producer(self, options: Mapping[str, Any]) -> Any:
        return RecordingProducer(self.inner.create_producer(options), self.log)

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.log]
