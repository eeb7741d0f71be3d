"""``TestStreamClient``: an engine on a client-owned in-memory cluster (see the package)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from kstreams.backends.memory import MemoryCluster, MemoryConsumer
from kstreams.backends.settings import Memory
from kstreams.engine import StreamEngine
from kstreams.exceptions import KStreamsError, StreamError
from kstreams.ports import Backend
from kstreams.producer import DEFAULT
from kstreams.records import ConsumerRecord, TopicPartition
from kstreams.streams import Stream
from kstreams.test_utils.topics import TopicInfo, _entered, _Lag, _subscribes

__all__ = ["RecordsNotHandledError", "TestStreamClient"]

logger = logging.getLogger("kstreams.test_utils")

# How often the exit waits look at the streams' progress. Handling a record
# publishes no event to await, so this one wait polls, bounded by a deadline.
_PROGRESS_POLL_S = 0.005


class RecordsNotHandledError(KStreamsError, AssertionError):
    """Leaving a ``TestStreamClient``, some records were still not handled in time."""


class TestStreamClient:
    """Run ``engine`` on a fresh in-memory cluster for the length of an ``async with`` block.

    ``topics`` are created on entry (with ``partitions`` partitions), so a
    pattern subscription sees them and ``get_event`` can wait on them; any
    other topic is created on first use with ``partitions`` partitions too.
    ``timeout_s`` bounds how long leaving the block waits for the streams to
    handle what was sent, and is the default wait of ``get_event``.

    A stream whose handler raised and that stopped for it (``STOP``,
    ``STOP_ENGINE``) fails the test: leaving the block raises that exception,
    and a ``get_event`` waiting meanwhile raises it at once. (``RESTART``
    keeps the stream going; its errors are logged, not raised.)

    ``stream_engine=`` is kpn/kstreams' name for ``engine``;
    ``monitoring_enabled`` is accepted for it too and changes nothing: a
    ``PrometheusMonitor`` reads the engine only when scraped.
    """

    # Not a test class, whatever its name says.
    __test__ = False

    def __init__(
        self,
        engine: StreamEngine | None = None,
        *,
        stream_engine: StreamEngine | None = None,
        topics: Iterable[str] = (),
        partitions: int = 1,
        timeout_s: float = 10.0,
        monitoring_enabled: bool = True,
    ) -> None:
        chosen = stream_engine if engine is None else engine
        if chosen is None or (engine is not None and stream_engine is not None):
            raise TypeError(
                "TestStreamClient takes the engine once: TestStreamClient(engine) or "
                "TestStreamClient(stream_engine=engine)"
            )
        self.engine = chosen
        self.monitoring_enabled = monitoring_enabled
        #: The engine's own ``send`` and ``send_many``: the engine's producer and serializer.
        self.send = chosen.send
        self.send_many = chosen.send_many
        self.topics = list(topics)
        self.partitions = partitions
        self.timeout_s = timeout_s
        self._cluster: MemoryCluster | None = None
        self._active = False
        self._saved_backend: Backend | None = None
        self._saved_stream_backends: dict[Stream, Backend] = {}
        self._cursors: dict[str, dict[TopicPartition, int]] = {}
        self._readers: dict[str, MemoryConsumer] = {}

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        return f"<TestStreamClient {self.engine!r} {state}>"

    @property
    def cluster(self) -> MemoryCluster:
        """The client's in-memory cluster (the one of its latest ``async with`` block)."""
        if self._cluster is None:
            raise StreamError("the client has no cluster yet: use it in 'async with client:'")
        return self._cluster

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> TestStreamClient:
        engine = self.engine
        if self._active:
            raise StreamError("this TestStreamClient is already in use")
        if engine.started:
            raise StreamError(
                "the engine is already running; TestStreamClient starts it on the memory backend"
            )
        cluster = MemoryCluster(default_partitions=self.partitions)
        for topic in self.topics:
            cluster.create_topic(topic)
        self._cluster = cluster
        self._cursors = {}
        memory = Memory(cluster=cluster)
        self._saved_backend = engine.backend
        self._saved_stream_backends = {s: s.backend for s in engine.streams if s.backend}
        engine._use_backend(memory)
        for stream in self._saved_stream_backends:
            stream.backend = memory
        try:
            await engine.start()
        except BaseException:
            self._restore()
            raise
        self._active = True
        _entered(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error: RecordsNotHandledError | None = None
        expected: dict[tuple[str, TopicPartition], int] = {}
        try:
            if exc_type is None:
                try:
                    expected = await self._wait_handled(self.timeout_s)
                except RecordsNotHandledError as not_handled:
                    error = not_handled
        finally:
            # Read before stopping: a stopped engine's streams are all not running.
            failed = self._failures()
            try:
                await self.engine.stop()
            finally:
                await self._close_readers()
                self._restore()
                self._active = False
        if exc is not None:
            # The block's own exception goes on; say what failed meanwhile.
            for name, failure in failed:
                if failure is not exc:
                    exc.add_note(f"meanwhile stream {name!r} failed: {failure!r}")
            return
        self._raise_failure(failed)
        if error is not None:
            raise error
        self._check_committed(expected)

    def _failures(self) -> list[tuple[str, BaseException]]:
        """Per stream that an error stopped, its name and the error."""
        return [
            (s.name, s.error) for s in self.engine.streams if s.error is not None and not s.running
        ]

    @staticmethod
    def _raise_failure(failed: list[tuple[str, BaseException]]) -> None:
        """Raise the first failed stream's error, naming the others in notes."""
        if not failed:
            return
        (_, error), *others = failed
        for name, other in others:
            error.add_note(f"stream {name!r} failed too: {other!r}")
        raise error

    def _restore(self) -> None:
        if self._saved_backend is not None:
            self.engine._use_backend(self._saved_backend)
            self._saved_backend = None
        for stream, backend in self._saved_stream_backends.items():
            stream.backend = backend
        self._saved_stream_backends = {}

    async def _close_readers(self) -> None:
        readers, self._readers = self._readers, {}
        for reader in readers.values():
            await reader.stop()

    # -- waiting for the streams -------------------------------------------------

    def _lags(self) -> list[_Lag]:
        """What the engine's running streams have not handled yet, per partition."""
        cluster = self.cluster
        streams = [s for s in self.engine.streams if s.running and s.consumer is not None]
        handled_by_group: dict[str | None, dict[TopicPartition, int]] = {}
        for stream in streams:
            assert stream.consumer is not None
            handled = handled_by_group.setdefault(stream.group_id, {})
            for tp, offset in stream.consumer.handled_offsets().items():
                handled[tp] = max(offset, handled.get(tp, 0))
        lags: list[_Lag] = []
        topics = cluster.topics()
        for stream in streams:
            handled = handled_by_group[stream.group_id]
            for topic in sorted(t for t in topics if _subscribes(stream, t)):
                for partition in sorted(cluster.partitions_for(topic)):
                    tp = TopicPartition(topic, partition)
                    end = cluster.end_offset(tp)
                    done = handled.get(tp, 0)
                    if stream.group_id is not None:
                        done = max(done, cluster.committed(stream.group_id, tp) or 0)
                    if done < end:
                        lags.append(_Lag(stream.name, stream.group_id, tp, done, end))
        return lags

    async def wait_handled(self, timeout_s: float | None = None) -> None:
        """Wait until the engine's running streams have handled every record produced so far
        to the topics they consume; raise ``RecordsNotHandledError`` naming what was not
        after ``timeout_s`` (default: the client's ``timeout_s``)."""
        await self._wait_handled(self.timeout_s if timeout_s is None else timeout_s)

    async def _wait_handled(self, timeout_s: float) -> dict[tuple[str, TopicPartition], int]:
        deadline = time.monotonic() + timeout_s
        while True:
            lags = self._lags()
            if not lags:
                return self._auto_commit_targets()
            if time.monotonic() >= deadline:
                detail = "; ".join(str(lag) for lag in lags)
                raise RecordsNotHandledError(
                    f"records not handled within {timeout_s:.1f}s: {detail}. Is a handler "
                    "stuck or failing (see stream.error), or did a stream start at "
                    "'latest' after they were sent?"
                )
            await asyncio.sleep(_PROGRESS_POLL_S)

    def _auto_commit_targets(self) -> dict[tuple[str, TopicPartition], int]:
        """Per (group, partition) of auto-committing streams, the offset stopping must commit."""
        cluster = self.cluster
        targets: dict[tuple[str, TopicPartition], int] = {}
        for stream in self.engine.streams:
            if not (stream.running and stream.auto_commit and stream.group_id is not None):
                continue
            for topic in cluster.topics():
                if _subscribes(stream, topic):
                    for partition in cluster.partitions_for(topic):
                        tp = TopicPartition(topic, partition)
                        targets[(stream.group_id, tp)] = cluster.end_offset(tp)
        return targets

    def _check_committed(self, targets: Mapping[tuple[str, TopicPartition], int]) -> None:
        cluster = self.cluster
        missing = [
            f"group {group!r}: {tp.topic}[{tp.partition}] committed "
            f"{cluster.committed(group, tp)} of {end}"
            for (group, tp), end in sorted(targets.items())
            if (cluster.committed(group, tp) or 0) < end
        ]
        if missing:
            raise RecordsNotHandledError(
                "records were handled but not committed when the engine stopped: "
                + "; ".join(missing)
            )

    # -- reading what was produced ----------------------------------------------

    def _cursor(self, topic: str) -> dict[TopicPartition, int]:
        return self._cursors.setdefault(topic, {})

    def _take(self, topic: str) -> ConsumerRecord[bytes | None, bytes | None] | None:
        cluster = self.cluster
        if topic not in cluster.topics():
            return None
        cursor = self._cursor(topic)
        best: ConsumerRecord[bytes | None, bytes | None] | None = None
        for partition in sorted(cluster.partitions_for(topic)):
            tp = TopicPartition(topic, partition)
            taken = cursor.get(tp, 0)
            if taken < cluster.end_offset(tp):
                record = cluster.records(tp)[taken]
                if best is None or record.timestamp < best.timestamp:
                    best = record
        if best is not None:
            cursor[best.topic_partition] = best.offset + 1
        return best

    async def _reader(self, topic: str) -> MemoryConsumer:
        reader = self._readers.get(topic)
        if reader is None:
            # Without a group it reads every partition and commits nothing: its
            # only use is to wake get_event when the topic grows.
            reader = MemoryConsumer(self.cluster, group_id=None, auto_offset_reset="earliest")
            reader.subscribe([topic])
            await reader.start()
            self._readers[topic] = reader
        return reader

    async def get_event(
        self,
        topic_name: str,
        *,
        timeout_s: float | None = None,
        deserializer: Any = DEFAULT,
    ) -> ConsumerRecord[Any, Any]:
        """The next record of ``topic_name`` this client has not taken yet.

        The client keeps its own read position per partition, as a consumer
        of a group of its own would: taking a record removes nothing from the
        topic and does not change what the engine's streams read. Records
        come out in offset order per partition; across partitions, oldest
        timestamp first (lowest partition on a tie).

        Waits up to ``timeout_s`` (default: the client's ``timeout_s``) for
        a record to arrive, then raises ``TimeoutError``; after the client's
        block it does not wait. The record is deserialized with the engine's
        deserializer, or with ``deserializer`` (``None`` for the raw bytes).
        """
        if self._cluster is None:
            raise StreamError("get_event needs the client's 'async with' block")
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait_s
        while True:
            record = self._take(topic_name)
            if record is not None:
                return await self._deserialize(record, deserializer)
            remaining = deadline - time.monotonic()
            if not self._active or remaining <= 0:
                taken = sum(self._cursor(topic_name).values())
                raise TimeoutError(
                    f"no record left on topic {topic_name!r} after {wait_s:.1f}s "
                    f"({taken} already taken by get_event)"
                )
            self._raise_failure(self._failures())
            reader = await self._reader(topic_name)
            await self._wait_for_records(reader, remaining)

    async def _wait_for_records(self, reader: MemoryConsumer, timeout_s: float) -> None:
        """Return when the topic has records ``reader`` has not seen, when one of the
        engine's streams ends (it may have failed), or after ``timeout_s``."""
        fetch = asyncio.ensure_future(reader.getmany(timeout_ms=max(1, int(timeout_s * 1000))))
        # A stream's task ends when an error stops the stream: waiting on the
        # tasks wakes get_event with the error instead of at its deadline.
        running = [getattr(s, "_task", None) for s in self.engine.streams]
        ends = {task for task in running if isinstance(task, asyncio.Task) and not task.done()}
        try:
            await asyncio.wait({fetch, *ends}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch

    async def _deserialize(
        self, record: ConsumerRecord[bytes | None, bytes | None], deserializer: Any
    ) -> ConsumerRecord[Any, Any]:
        chosen = self.engine.deserializer if deserializer is DEFAULT else deserializer
        if chosen is None:
            return record
        result: ConsumerRecord[Any, Any] = await chosen.deserialize(record)
        return result

    def get_topic(self, topic_name: str) -> TopicInfo:
        """A live view of ``topic_name``: its records, offsets and commits."""
        return TopicInfo(self, topic_name)
