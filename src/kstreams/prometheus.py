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

The consumer gauges cover the partitions assigned to each running stream;
``consumer_committed`` (and so ``consumer_lag``) appears once the stream
has committed in its current assignment. Streams without a group have
``consumer_group=""``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
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

from kstreams.engine import StreamEngine

__all__ = ["PrometheusMonitor"]

logger = logging.getLogger("kstreams.prometheus")

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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    produced: dict[tuple[str, int], int]
    partitions: list[_PartitionState]


def _snapshot(engines: list[StreamEngine]) -> _Snapshot:
    """Read the engines' state; runs on their event loop's thread."""
    produced: dict[tuple[str, int], int] = {}
    partitions: list[_PartitionState] = []
    seen: set[tuple[str, int, str]] = set()
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
                partitions.append(
                    _PartitionState(
                        tp.topic,
                        tp.partition,
                        group,
                        committed.get(tp),
                        positions.get(tp),
                        consumer.highwater(tp),
                    )
                )
    return _Snapshot(produced, partitions)


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
        self.registry.register(self)

    def __repr__(self) -> str:
        return f"<PrometheusMonitor engines={len(self._engines)}>"

    def watch(self, engine: StreamEngine) -> StreamEngine:
        """Report ``engine``'s producer and streams from now on; returns the engine."""
        if engine not in self._engines:
            self._engines.append(engine)
            engine.on_startup(self._remember_loop)
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

    def _remember_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _take_snapshot(self) -> _Snapshot:
        engines = list(self._engines)
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident() or loop.is_closed():
            return _snapshot(engines)
        if not loop.is_running():
            # Nothing runs on the engines' loop, so nothing changes under us.
            return _snapshot(engines)
        future: concurrent.futures.Future[_Snapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                future.set_result(_snapshot(engines))
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
