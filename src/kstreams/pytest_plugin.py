"""The ``kstreams`` pytest plugin, active wherever kstreams is installed.

It runs every ``async def test_*`` (and the async fixtures it uses) on
asyncio through anyio's pytest plugin, so a test written as in the docs
needs no marker. Tests that already carry an ``anyio`` or ``asyncio``
marker are left as they are, and so is everything when pytest-asyncio runs
in auto mode. ``-p no:kstreams`` turns the plugin off.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator

import pytest


def _asyncio_auto(config: pytest.Config) -> bool:
    try:
        return str(config.getini("asyncio_mode")) == "auto"
    except ValueError:  # pytest-asyncio is not installed: no such ini key
        return False


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, object, object]:
    """Mark coroutine tests for anyio before parametrization expands them."""
    if (
        collector.funcnamefilter(name)
        and inspect.iscoroutinefunction(obj)
        and not _asyncio_auto(collector.config)
    ):
        marks = {mark.name for mark in getattr(obj, "pytestmark", ())}
        if not marks & {"anyio", "asyncio"}:
            pytest.mark.anyio(obj)
    return (yield)


@pytest.fixture
def anyio_backend() -> str:
    """kstreams runs on asyncio; a conftest may override this fixture."""
    return "asyncio"
