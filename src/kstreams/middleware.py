"""Middlewares: code that wraps a stream's handler, outermost first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kstreams.streams import Stream
    from kstreams.types import Send

#: What a middleware calls to hand a record (or a batch) on.
NextMiddlewareCall = Callable[[Any], Awaitable[Any]]


class BaseMiddleware:
    """Subclass it and implement ``__call__``; call ``self.next_call(cr)`` to go on.

    Not calling ``next_call`` skips the handler for that record, which then
    counts as handled.
    """

    def __init__(
        self, *, next_call: NextMiddlewareCall, send: Send, stream: Stream, **kwargs: Any
    ) -> None:
        self.next_call = next_call
        self.send = send
        self.stream = stream

    async def __call__(self, cr: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class Middleware:
    """A middleware class with the options to build it with, once per stream start."""

    def __init__(self, middleware: type[BaseMiddleware], **kwargs: Any) -> None:
        if not (isinstance(middleware, type) and issubclass(middleware, BaseMiddleware)):
            raise TypeError(f"{middleware!r} is not a BaseMiddleware subclass")
        self.middleware = middleware
        self.kwargs = kwargs

    def build(self, next_call: NextMiddlewareCall, *, send: Send, stream: Stream) -> BaseMiddleware:
        return self.middleware(next_call=next_call, send=send, stream=stream, **self.kwargs)

    def __repr__(self) -> str:
        return f"Middleware({self.middleware.__name__}, **{self.kwargs!r})"
