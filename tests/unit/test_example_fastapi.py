"""examples/fastapi_sse.py on the memory backend: lifespan, POST to produce, SSE to consume."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvicorn

from kstreams.test_utils import TestStreamClient
from tests.broker import free_port
from tests.polling import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_sse.py"


@pytest.fixture
def example() -> Iterator[ModuleType]:
    """A fresh copy of the example module: its own engine and app."""
    name = "fastapi_sse_under_test"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def listening(module: ModuleType) -> bool:
    return any(s.name.startswith("sse-") and s.running for s in module.engine.streams)


def sse_data(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data:")]


async def test_sse_streams_what_is_posted_through_the_asgi_app(example: ModuleType) -> None:
    """Values POSTed after a listener connected come back on GET /events, in order."""
    app = example.app
    async with (
        TestStreamClient(example.engine) as client,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        listener = asyncio.create_task(http.get("/events", params={"limit": 3}))
        await eventually(lambda: listening(example))
        for value in ("one", "two", "three"):
            answer = await http.post("/events", json={"value": value, "key": "k"})
            assert answer.status_code == 200
        response = await asyncio.wait_for(listener, 10)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert sse_data(response.text) == ["one", "two", "three"]
        assert answer.json() == {"topic": example.TOPIC, "partition": 0, "offset": 2}
        assert client.get_topic(example.TOPIC).total_events == 3
    assert not example.engine.started
    assert not any(s.name.startswith("sse-") for s in example.engine.streams)


async def test_two_listeners_each_get_every_record(example: ModuleType) -> None:
    """Each connection has its own stream, so both see all records."""
    app = example.app
    async with (
        TestStreamClient(example.engine),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        first = asyncio.create_task(http.get("/events", params={"limit": 2}))
        second = asyncio.create_task(http.get("/events", params={"limit": 2}))
        await eventually(
            lambda: (
                sum(s.name.startswith("sse-") and s.running for s in example.engine.streams) == 2
            )
        )
        await http.post("/events", json={"value": "a"})
        await http.post("/events", json={"value": "multi\nline"})
        bodies = [r.text for r in await asyncio.wait_for(asyncio.gather(first, second), 10)]
    for body in bodies:
        assert sse_data(body) == ["a", "multi", "line"]
        assert "data: multi\ndata: line\n\n" in body


async def test_sse_streams_live_over_http_with_uvicorn(example: ModuleType) -> None:
    """Through a real uvicorn server, each event arrives while the response is still open."""
    port = free_port()
    config = uvicorn.Config(
        example.app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    async with TestStreamClient(example.engine):
        serving = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started)
            base = f"http://127.0.0.1:{port}"
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as http,
                http.stream("GET", "/events") as response,
            ):
                lines = response.aiter_lines()
                assert await anext(lines) == ": subscribed"
                got: list[str] = []
                for value in ("live-1", "live-2"):
                    await http.post("/events", json={"value": value})
                    while not (line := await asyncio.wait_for(anext(lines), 10)).startswith(
                        "data:"
                    ):
                        pass
                    got.append(line.removeprefix("data: "))
                assert got == ["live-1", "live-2"]
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 10)
