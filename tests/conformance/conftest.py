"""One fixture runs every conformance scenario on every backend.

memory runs in the unit tier; aiokafka and confluent run against each real
broker of the integration tier (marked ``integration``): a parameter such as
``aiokafka-noida`` names the backend and the broker.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kstreams import ConsumerRecord, StreamEngine, create_engine
from kstreams.backends import Aiokafka, Confluent, Memory
from kstreams.ports import Backend
from tests.broker import broker_kinds, group_timings

#: Short group timings for the memory backend; real brokers get theirs from ``group_timings``.
FAST_GROUP = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}


@dataclass
class Harness:
    """What a scenario needs from a backend under test."""

    name: str
    backend: Backend
    bootstrap: str | None = None
    #: "tansu", "noida" or "external"; ``None`` on memory.
    broker: str | None = None
    engines: list[StreamEngine] = field(default_factory=list)

    @property
    def real(self) -> bool:
        return self.name != "memory"

    @property
    def external(self) -> bool:
        """A broker named by $KSTREAMS_TEST_BOOTSTRAP rather than an embedded one."""
        return bool(os.environ.get("KSTREAMS_TEST_BOOTSTRAP"))

    @property
    def group_timings(self) -> dict[str, Any]:
        """Short group timings the broker under test accepts."""
        return FAST_GROUP if self.bootstrap is None else group_timings(self.bootstrap)

    def engine(self, **kwargs: Any) -> StreamEngine:
        engine = create_engine(backend=self.backend, **kwargs)
        self.engines.append(engine)
        return engine

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Consumer options every scenario uses, plus its own."""
        return {**self.group_timings, "auto_offset_reset": "earliest", **overrides}

    async def create_topic(self, topic: str, partitions: int) -> None:
        if not self.real:
            assert isinstance(self.backend, Memory)
            created = self.backend.resolved_cluster().create_topic(topic, partitions=partitions)
            if inspect.isawaitable(created):
                await created
            return
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()


@pytest.fixture(
    params=[
        "memory",
        *(
            pytest.param(f"{backend}-{broker}", marks=pytest.mark.integration)
            for backend in ("aiokafka", "confluent")
            for broker in broker_kinds()
        ),
    ]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every conformance test runs once per backend, real ones once per broker."""
    name: str = request.param
    return name


@pytest.fixture
async def harness(backend_name: str, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The backend under test, with engines stopped at the end whatever happened."""
    if backend_name == "memory":
        from kstreams.backends.memory import MemoryCluster

        h = Harness(backend_name, Memory(cluster=MemoryCluster()))
    else:
        name, broker = backend_name.split("-", 1)
        bootstrap: str = request.getfixturevalue(f"{broker}_bootstrap")
        settings = Aiokafka if name == "aiokafka" else Confluent
        h = Harness(name, settings(bootstrap_servers=bootstrap), bootstrap, broker)
    yield h
    for engine in h.engines:
        await engine.stop()


class Collector:
    """Records handled by a stream, with a way to wait for a count."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord[Any, Any]] = []
        self._changed = asyncio.Event()

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(self, count: int, within: float = 20.0) -> list[ConsumerRecord[Any, Any]]:
        async def reached() -> None:
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), within)
        return self.records

    @property
    def values(self) -> list[Any]:
        return [r.value for r in self.records]

    @property
    def offsets(self) -> list[int]:
        return [r.offset for r in self.records]


@pytest.fixture
def collector() -> Collector:
    return Collector()
