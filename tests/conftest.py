from __future__ import annotations

import asyncio
import functools
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.broker import broker_kinds, noida_broker, tansu_broker


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> object:
    """Run every ``async def test_*`` on anyio, marked before parametrization expands it."""
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)
    return (yield)


#: Conformance parameters naming a backend and a broker, such as ``aiokafka-noida``.
_BACKEND_PARAMS = ("backend_name", "backend_from_env")


def _backend_param(item: pytest.Item) -> tuple[str, str] | None:
    callspec = getattr(item, "callspec", None)
    for name in _BACKEND_PARAMS:
        value = None if callspec is None else callspec.params.get(name)
        if isinstance(value, str):
            backend, _, broker = value.partition("-")
            return backend, broker
    return None


def item_broker(item: pytest.Item) -> str | None:
    """The broker a collected test runs against: its ``kafka_bootstrap`` parameter, or the
    broker half of a conformance parameter such as ``aiokafka-noida``."""
    callspec = getattr(item, "callspec", None)
    broker = None if callspec is None else callspec.params.get("kafka_bootstrap")
    if isinstance(broker, str):
        return broker
    pair = _backend_param(item)
    return pair[1] if pair and pair[1] else None


def item_backend(item: pytest.Item) -> str | None:
    pair = _backend_param(item)
    return pair[0] if pair else None


def _bounded(func: Callable[..., Awaitable[Any]], limit: float) -> Callable[..., Any]:
    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(limit):
            return await func(*args, **kwargs)

    return run


def _bound_async_test(item: pytest.Item) -> None:
    """Fail a hung async test by its own timeout, a little inside pytest-timeout's.

    pytest-timeout's signal lands in whatever event-loop callback is running, and
    asyncio catches and logs it there: the test would hang instead of failing.
    """
    if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(item.obj):
        return
    marker = item.get_closest_marker("timeout")
    limit = (
        float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout"))
    )
    if limit > 0:
        item.obj = _bounded(item.obj, max(limit - 5, limit * 0.75))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``broker_xfail(broker, ..., backend=None, reason=, raises=)`` becomes a strict xfail on
    the runs of the test against those brokers (and that backend), and on no other run.
    Every async test gets an event-loop timeout (see ``_bound_async_test``)."""
    for item in items:
        _bound_async_test(item)
        for mark in item.iter_markers("broker_xfail"):
            options = dict(mark.kwargs)
            backend = options.pop("backend", None)
            if item_broker(item) not in mark.args:
                continue
            if backend is not None and item_backend(item) != backend:
                continue
            item.add_marker(pytest.mark.xfail(strict=True, **options))


@pytest.fixture(scope="session")
def tansu_bootstrap() -> Iterator[str]:
    """Tansu on a free loopback port, for the whole session."""
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def noida_bootstrap() -> Iterator[str]:
    """noida-db on a free loopback port and a temp data dir, for the whole session."""
    with noida_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def external_bootstrap() -> str:
    """The Kafka named by ``$KSTREAMS_TEST_BOOTSTRAP``."""
    return os.environ["KSTREAMS_TEST_BOOTSTRAP"]


@pytest.fixture(scope="session", params=broker_kinds())
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """A real broker: ``$KSTREAMS_TEST_BOOTSTRAP`` if set, else each embedded broker that
    ``$KSTREAMS_TEST_BROKER`` names (tansu, noida or both, the default) in turn."""
    bootstrap: str = request.getfixturevalue(f"{request.param}_bootstrap")
    return bootstrap


@pytest.fixture
def unique() -> str:
    """A short suffix that keeps topics and groups of one test apart from every other."""
    return uuid.uuid4().hex[:10]
