"""A backend wrapper that records what the core asks of its ports, in order.

Its consumers also let a test drive an interleaving on purpose: wait for a
rebalance callback to begin or end, hold the next fetch at the client's door,
wait for a commit to land, or report a stale assignment as aiokafka does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from kstreams.ports import Backend, ConsumerPort, ProducerPort, RebalanceCallbacks
from kstreams.records import RecordMetadata, TopicPartition


class FetchHold:
    """One ``getmany`` held before it reaches the client: the core is fetching meanwhile."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()


class _TappedListener:
    """Between the client and the listener the core subscribed with: notes when each
    callback begins and ends, on the port that owns it."""

    def __init__(self, inner: RebalanceCallbacks, port: RecordingConsumer) -> None:
        self._inner = inner
        self._port = port

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self._port._note("revoke.start", revoked)
        try:
            await self._inner.on_partitions_revoked(revoked)
        finally:
            self._port._note("revoke.end", revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        if assigned:
            self._port._previous_assignment = assigned
        self._port._note("assign.start", assigned)
        try:
            await self._inner.on_partitions_assigned(assigned)
        finally:
            self._port._note("assign.end", assigned)


class RecordingConsumer:
    """Forwards to a real consumer port; logs lifecycle and commit calls."""

    def __init__(self, inner: ConsumerPort, log: list[tuple[Any, ...]], name: str) -> None:
        self._inner = inner
        self._log = log
        self._name = name
        self.on_commit: Callable[[Mapping[TopicPartition, int]], None] | None = None
        self.getmany_calls = 0
        #: Rebalance callbacks as (``revoke.start|revoke.end|assign.start|assign.end``,
        #: partitions), in order; kept apart from the backend's log.
        self.callbacks: list[tuple[str, frozenset[TopicPartition]]] = []
        #: Offsets the client accepted, one dict per commit.
        self.commits: list[dict[TopicPartition, int]] = []
        #: Report the previous generation's partitions while the client has none,
        #: as aiokafka's assignment() does while the member rejoins.
        self.lag_assignment = False
        self._previous_assignment: frozenset[TopicPartition] = frozenset()
        self._hold: FetchHold | None = None
        self._changed = asyncio.Event()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    def _note(self, kind: str, partitions: frozenset[TopicPartition]) -> None:
        self.callbacks.append((kind, partitions))
        self._changed.set()

    async def _until(self, reached: Callable[[], bool]) -> None:
        # Unbounded on purpose: callers bound it with asyncio.wait_for.
        while not reached():
            self._changed.clear()
            await self._changed.wait()

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        tapped = None if listener is None else _TappedListener(listener, self)
        self._inner.subscribe(topics, pattern=pattern, listener=tapped)

    async def wait_for_callback(self, kind: str, partition: TopicPartition, count: int = 1) -> None:
        """Wait until ``count`` ``kind`` callbacks naming ``partition`` happened."""
        await self._until(
            lambda: sum(1 for k, tps in self.callbacks if k == kind and partition in tps) >= count
        )

    async def wait_for_commit(self, partition: TopicPartition, offset: int) -> None:
        """Wait until the client accepted a commit of ``partition`` at ``offset`` or beyond."""
        await self._until(lambda: any(c.get(partition, -1) >= offset for c in self.commits))

    async def wait_for_fetches(self, calls: int) -> None:
        """Wait until ``getmany`` was called ``calls`` times in all."""
        await self._until(lambda: self.getmany_calls >= calls)

    def hold_next_fetch(self) -> FetchHold:
        """The next ``getmany`` waits, before it reaches the client, for ``release()``."""
        hold = self._hold = FetchHold()
        return hold

    def assignment(self) -> frozenset[TopicPartition]:
        assigned: frozenset[TopicPartition] = self._inner.assignment()
        if self.lag_assignment and not assigned:
            return self._previous_assignment
        return assigned

    async def start(self) -> None:
        self._log.append(("consumer.start", self._name))
        await self._inner.start()

    async def stop(self) -> None:
        self._log.append(("consumer.stop", self._name))
        await self._inner.stop()

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> Any:
        self.getmany_calls += 1
        self._changed.set()
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.entered.set()
            await hold._released.wait()
        return await self._inner.getmany(timeout_ms=timeout_ms, max_records=max_records)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.on_commit is not None:
            self.on_commit(offsets)
        self._log.append(("consumer.commit", self._name, dict(offsets)))
        await self._inner.commit(offsets)
        self.commits.append(dict(offsets))
        self._changed.set()


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
