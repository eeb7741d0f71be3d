"""Declaring a stream apart from an engine, to add it later with ``engine.add_stream``.

Keeping the streams in a module that does not import the engine avoids
circular imports in a project of many modules::

    # streams.py
    @kstreams.stream("orders", group_id="shop")
    async def orders(cr: ConsumerRecord) -> None: ...

    # app.py
    engine.add_stream(orders)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kstreams.streams import Stream


def stream(topics: str | Sequence[str], **kwargs: Any) -> Callable[[Callable[..., Any]], Stream]:
    """Turn the decorated handler into a :class:`Stream` of ``topics``, in no engine yet.

    ``kwargs`` are what ``Stream`` and ``engine.stream`` take (``group_id``,
    ``name``, ``error_policy``, ``middlewares``, ``get_many``, aiokafka consumer
    options...), checked now.
    """

    def decorator(func: Callable[..., Any]) -> Stream:
        return Stream(topics, func=func, **kwargs)

    return decorator


__all__ = ["stream"]
