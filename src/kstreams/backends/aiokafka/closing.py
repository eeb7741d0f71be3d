"""Closing aiokafka clients within a bound, releasing what they hold when the bound is hit.

aiokafka's ``stop()`` first waits for the client's background work (a
consumer's group coordination, a producer's sender) and closes the sockets
last. A stop cut short by its caller's bound (a broker keeping the group
rebalancing, one that stopped answering) never reaches that last step: the
sockets stay open, the tasks keep running until the event loop is closed, and
the objects are only collected later, far from the stop that leaked them.
So a stop that does not finish releases them itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio

logger = logging.getLogger(__name__)

#: How long a failed or cancelled start waits for its client to close.
CLOSE_AFTER_FAILED_START_S = 10.0

#: The client's parts whose attributes hold its background tasks (aiokafka 0.11 to 0.14).
_PARTS = ("_coordinator", "_fetcher", "_sender", "_client")


async def stop_client(client: Any) -> None:
    """``client.stop()``; when it raises or is cancelled, :func:`release` the client."""
    try:
        await client.stop()
    except BaseException:
        release(client)
        raise


async def close_shielded(client: Any) -> None:
    """Stop ``client``, within CLOSE_AFTER_FAILED_START_S even if the caller is cancelled.

    A cancelled or failed start must still close the client, or aiokafka warns
    about an unclosed client when it is collected; bounded, as the stop that
    cancelled the start is.
    """
    with anyio.move_on_after(CLOSE_AFTER_FAILED_START_S, shield=True) as scope:
        await stop_client(client)
    if scope.cancelled_caught:
        logger.warning("aiokafka client did not close within %.0fs", CLOSE_AFTER_FAILED_START_S)


def release(client: Any) -> None:
    """Cancel the background tasks of a client whose stop did not finish and close its
    sockets. Only attributes found are touched: another aiokafka's layout is left alone."""
    for name in _PARTS:
        part = getattr(client, name, None)
        for value in list(getattr(part, "__dict__", {}).values()):
            if isinstance(value, asyncio.Task) and not value.done():
                value.cancel()
    connections = getattr(getattr(client, "_client", None), "_conns", None)
    if isinstance(connections, dict):
        for connection in list(connections.values()):
            try:
                connection.close()
            except Exception:  # a socket that cannot close is closed enough
                logger.debug("closing an aiokafka connection failed", exc_info=True)
