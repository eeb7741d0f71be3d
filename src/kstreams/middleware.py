"""Middlewares: code that wraps a stream's handler, outermost first."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kstreams.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from kstreams.streams import Stream
    from kstreams.types import Send

#: What a middleware calls to hand a record (or a batch) on.
NextMiddlewareCall = Callable[[Any], Awaitable[Any]]


class BaseMiddleware:
    """Subclass it and implement ``__call__``; call ``self.next_call(cr)`` to go on.

    Not calling ``next_call`` skips the handler for that record, which then
    counts as handled. An exception raised out of ``__call__`` is the
    handler's failure: the stream's error policy applies and the record is
    not committed. With ``get_many``, ``cr`` is the batch (a list).
    """

    def __init__(
        self, *, next_call: NextMiddlewareCall, send: Send, stream: Stream, **kwargs: Any
    ) -> None:
        self.next_call = next_call
        self.send = send
        self.stream = stream

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Raise if ``options`` are not valid; called by ``Middleware(cls, **options)``,
        so a mistake fails where the stream is declared."""

    async def __call__(self, cr: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class Middleware:
    """A middleware class with the options to build it with, once per stream start.

    The options are checked now against the class's ``__init__`` (a
    misspelled one is a ``TypeError`` unless it takes ``**kwargs``) and by
    its ``check_options``.
    """

    def __init__(self, middleware: type[BaseMiddleware], **kwargs: Any) -> None:
        if not (isinstance(middleware, type) and issubclass(middleware, BaseMiddleware)):
            raise InvalidArgumentError(f"{middleware!r} is not a BaseMiddleware subclass")
        try:
            inspect.signature(middleware).bind(next_call=None, send=None, stream=None, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentError(f"Middleware({middleware.__name__}, ...): {exc}") from None
        middleware.check_options(**kwargs)
        self.middleware = middleware
        self.kwargs = kwargs

    def build(self, next_call: NextMiddlewareCall, *, send: Send, stream: Stream) -> BaseMiddleware:
        return self.middleware(next_call=next_call, send=send, stream=stream, **self.kwargs)

    def __repr__(self) -> str:
        return f"Middleware({self.middleware.__name__}, **{self.kwargs!r})"
