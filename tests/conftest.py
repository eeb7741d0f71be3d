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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)


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
