"""A FastAPI app: the engine lives in the app's lifespan, records stream out as Server-Sent Events.

    pip install 'kstreams-hex[examples]'
    KSTREAMS_BACKEND=memory uvicorn fastapi_sse:app --app-dir examples

    curl -N localhost:8000/events                      # waits for records, one SSE event each
    curl -X POST localhost:8000/events -H 'content-type: application/json' -d '{"value": "hi"}'

Each ``GET /events`` gets a stream of its own, without a consumer group, so
every listener sees every record produced after it connected. The stream's
handler is an async generator; the endpoint reads it with
``async with stream as flow``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from kstreams import ConsumerRecord, Stream, create_engine

TOPIC = "fastapi-sse-events"

# The backend comes from $KSTREAMS_BACKEND (aiokafka unless told otherwise).
engine = create_engine(title="fastapi-sse")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await engine.start()
    try:
        yield
    finally:
        await engine.stop()


app = FastAPI(title="kstreams SSE example", lifespan=lifespan)


class Event(BaseModel):
    value: str
    key: str | None = None


class Produced(BaseModel):
    topic: str
    partition: int
    offset: int


@app.post("/events")
async def publish(event: Event) -> Produced:
    metadata = await engine.send(TOPIC, value=event.value, key=event.key)
    return Produced(topic=metadata.topic, partition=metadata.partition, offset=metadata.offset)


async def as_text(cr: ConsumerRecord[bytes | None, bytes | None]) -> AsyncIterator[str]:
    """The stream's generator: each record's value, as text."""
    yield (cr.value or b"").decode(errors="replace")


def new_listener() -> Stream:
    stream = Stream(
        TOPIC,
        func=as_text,
        name=f"sse-{uuid.uuid4().hex[:12]}",
        auto_offset_reset="latest",
    )
    engine.add_stream(stream)
    return stream


@app.get("/events")
async def events(limit: int | None = None) -> StreamingResponse:
    """Records produced from now on, one ``data:`` event each; ``limit`` ends the response."""
    stream = new_listener()

    async def body() -> AsyncIterator[str]:
        sent = 0
        try:
            async with stream as flow:
                # An SSE comment: the client knows it is subscribed from here on.
                yield ": subscribed\n\n"
                if limit is not None and limit <= 0:
                    return
                async for value in flow:
                    lines = "".join(f"data: {line}\n" for line in value.split("\n"))
                    yield f"{lines}\n"
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
        finally:
            await engine.remove_stream(stream)

    return StreamingResponse(body(), media_type="text/event-stream")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
