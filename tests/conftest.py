from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.broker import tansu_broker


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


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real broker: ``$KSTREAMS_TEST_BOOTSTRAP`` if set, else Tansu on a free port."""
    external = os.environ.get("KSTREAMS_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def unique() -> str:
    """A short suffix that keeps topics and groups of one test apart from every other."""
    return uuid.uuid4().hex[:10]
