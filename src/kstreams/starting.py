"""Waiting for a start that runs in a task of its own, which a stop may cancel."""

from __future__ import annotations

import asyncio


async def await_start(task: asyncio.Task[None]) -> bool:
    """Wait for the start running in ``task``: True once it is done, False if a stop
    cancelled it; a failure of the start is raised.

    The start is shielded from its callers, but a caller cancelled while it
    waits gave up on it: the start is cancelled too.
    """
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.cancel()
            raise
        if not task.cancelled():
            raise
        return False
    return True
