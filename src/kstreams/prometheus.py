"""Prometheus metrics of engines' producers and streams.

Needs prometheus-client: ``pip install 'kstreams-hex[prometheus]'``.

::

    from prometheus_client import start_http_server
    from kstreams.prometheus import PrometheusMonitor

    monitor = PrometheusMonitor()      # the default registry, or registry=...
    monitor.watch(engine)
    start_http_server(8000)

Every value is read from the engine when the registry is scraped, so
handling a record costs nothing extra, and the partitions a stream lost in
a rebalance disappear from the next scrape: its consumer forgets them.

==========================  ====================================================
gauge                       value, per topic / partition (/ consumer_group)
==========================  ====================================================
``topic_partition_offsets`` offset of the last record the producer had acked
``consumer_committed``      offset the stream last committed (next to read)
``consumer_position``       offset of the next record the stream hands out
``consumer_highwater``      high watermark seen in the last fetch
``consumer_lag``            highwater - committed
``position_lag``            highwater - position
==========================  ====================================================

The consumer gauges cover the partitions assigned to each running stream.
What a stream's consumer does not know locally (the committed offset and
position of a partition just assigned, before its first commit or fetch)
is asked of the broker in the background at a scrape and reported from the
next one on. Streams without a group have ``consumer_group=""`` and no
``consumer_committed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily
except ModuleNotFoundError as exc:
    if exc.name != "prometheus_client":
        raise
    raise ModuleNotFoundError(
        "kstreams.prometheus needs prometheus-client: pip install 'kstreams-hex[prometheus]'",
        name=exc.name,
    ) from exc

from kstreams.consumer import StreamConsumer
from kstreams.engine import StreamEngine
from kstreams.records import TopicPartition

__all__ = ["PrometheusMonitor"]

logger = logging.getLogger("kstreams.prometheus")

#: How often, at most, an offset a consumer does not know is asked of the broker.
_ASK_EVERY_S = 1.0

_PRODUCER_LABELS = ("topic", "partition")
_CONSUMER_LABELS = ("topic", "partition", "consumer_group")

_METRICS = {
    "topic_partition_offsets": "Offset of the last record the producer had acknowledged",
    "consumer_committed": "Offset the consumer group last committed (the next to read)",
    "consumer_position": "Offset of the next record the stream hands out",
    "consumer_highwater": "High watermark of the partition seen in the last fetch",
    "consumer_lag": "Records not committed yet: highwater - committed",
    "position_lag": "Records not handed out yet: highwater - position",
}


@dataclass(frozen=True, slots=True)
class _PartitionState:
    topic: str
    partition: int
    group: str
    committed: int | None
    position: int | None
    highwater: int | None


#: (consumer, partition, "committed" or "position")
_Key = tuple[StreamConsumer, TopicPartition, str]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    produced: dict[tuple[str, int], int]
    partitions: list[_PartitionState]


class PrometheusMonitor:
    """A prometheus-client collector over the engines it watches.

    ``registry`` defaults to prometheus-client's global ``REGISTRY``. A
    scrape from another thread (``start_http_server``) reads the engines on
    their event loop, waiting at most ``scrape_timeout_s``.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, scrape_timeout_s: float = 2.0
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.scrape_timeout_s = scrape_timeout_s
        self._engines: list[StreamEngine] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Offsets the consumers do not know locally (after a rebalance, before
        # the first commit or fetch), asked for in the background; the last
        # answer is reported until the consumer knows better.
        self._asked: dict[_Key, int | None] = {}
        self._asking: set[_Key] = set()
        self._asked_at: dict[_Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.registry.register(self)

    def __repr__(self) -> str:
        return f"<PrometheusMonitor engines={len(self._engines)}>"

    def watch(self, engine: StreamEngine) -> StreamEngine:
        """Report ``engine``'s producer and streams from now on; returns the engine."""
        if engine not in self._engines:
            self._engines.append(engine)
            engine.on_startup(self._remember_loop)
            # Nothing may be asked of consumers that are closing.
            engine.on_stop(self._cancel_asks)
            if engine.started:
                self._remember_loop()
        return engine

    def unwatch(self, engine: StreamEngine) -> None:
        """Stop reporting ``engine``."""
        if engine in self._engines:
            self._engines.remove(engine)

    def close(self) -> None:
        """Unregister from the registry."""
        self.registry.unregister(self)

    def _cancel_asks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _remember_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _snapshot(self, engines: list[StreamEngine]) -> _Snapshot:
        """Read the engines' state; runs on their event loop's thread when it runs."""
        produced: dict[tuple[str, int], int] = {}
        partitions: list[_PartitionState] = []
        seen: set[tuple[str, int, str]] = set()
        live: set[_Key] = set()
        for engine in engines:
            for key, offset in engine.producer.last_offsets.items():
                produced[key] = max(offset, produced.get(key, offset))
            for stream in engine.streams:
                consumer = stream.consumer
                if not stream.running or consumer is None or consumer.closed:
                    continue
                group = stream.group_id or ""
                committed = consumer.committed_offsets()
                positions = consumer.positions()
                for tp in sorted(consumer.assignment()):
                    labels = (tp.topic, tp.partition, group)
                    if labels in seen:
                        continue
                    seen.add(labels)
                    state = _PartitionState(
                        tp.topic,
                        tp.partition,
                        group,
                        self._known(consumer, tp, "committed", committed, live, bool(group)),
                        self._known(consumer, tp, "position", positions, live, True),
                        consumer.highwater(tp),
                    )
                    partitions.append(state)
        for gone in [key for key in self._asked_at if key not in live]:
            self._asked.pop(gone, None)
            del self._asked_at[gone]
        return _Snapshot(produced, partitions)

    def _known(
        self,
        consumer: StreamConsumer,
        tp: TopicPartition,
        what: str,
        local: dict[TopicPartition, int],
        live: set[_Key],
        can_ask: bool,
    ) -> int | None:
        """The consumer's own value; else the last one asked for, asking again."""
        if tp in local:
            return local[tp]
        if not can_ask:
            return None
        key = (consumer, tp, what)
        live.add(key)
        now = time.monotonic()
        if key not in self._asking and now - self._asked_at.get(key, -_ASK_EVERY_S) >= _ASK_EVERY_S:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return self._asked.get(key)
            self._asking.add(key)
            self._asked_at[key] = now
            task = loop.create_task(self._ask(key), name="kstreams-prometheus-ask")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._asked.get(key)

    async def _ask(self, key: _Key) -> None:
        consumer, tp, what = key
        try:
            if what == "committed":
                value = await consumer.committed(tp)
            else:
                value = await consumer.position(tp)
            self._asked[key] = value
        except Exception as exc:
            # The partition moved or the consumer closed meanwhile.
            logger.debug("could not read the %s offset of %s: %r", what, tp, exc)
        finally:
            self._asking.discard(key)

    def _take_snapshot(self) -> _Snapshot:
        engines = list(self._engines)
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident() or loop.is_closed():
            return self._snapshot(engines)
        if not loop.is_running():
            # Nothing runs on the engines' loop, so nothing changes under us.
            return self._snapshot(engines)
        future: concurrent.futures.Future[_Snapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                future.set_result(self._snapshot(engines))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(take)
        return future.result(timeout=self.scrape_timeout_s)

    # -- the prometheus-client collector protocol -----------------------------

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                name,
                doc,
                labels=_PRODUCER_LABELS if name == "topic_partition_offsets" else _CONSUMER_LABELS,
            )
            for name, doc in _METRICS.items()
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        try:
            snapshot = self._take_snapshot()
        except Exception:
            logger.warning("could not read the engines for a scrape", exc_info=True)
            yield from families
            return
        by_name: dict[str, Any] = {family.name: family for family in families}
        produced = by_name["topic_partition_offsets"]
        for (topic, partition), offset in sorted(snapshot.produced.items()):
            produced.add_metric([topic, str(partition)], offset)
        for state in snapshot.partitions:
            labels = [state.topic, str(state.partition), state.group]
            if state.committed is not None:
                by_name["consumer_committed"].add_metric(labels, state.committed)
            if state.position is not None:
                by_name["consumer_position"].add_metric(labels, state.position)
            if state.highwater is not None:
                by_name["consumer_highwater"].add_metric(labels, state.highwater)
                if state.committed is not None:
                    by_name["consumer_lag"].add_metric(labels, state.highwater - state.committed)
                if state.position is not None:
                    by_name["position_lag"].add_metric(labels, state.highwater - state.position)
        yield from families
