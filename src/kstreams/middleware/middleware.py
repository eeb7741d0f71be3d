"""Middlewares: code that wraps a stream's handler, outermost first."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol

from kstreams.exceptions import InvalidArgumentError
from kstreams.types import NextMiddlewareCall

if TYPE_CHECKING:
    from kstreams.streams import Stream
    from kstreams.types import Send, SendMany


class BaseMiddleware:
    """Subclass it and implement ``__call__``; call ``self.next_call(cr)`` to go on.

    Not calling ``next_call`` skips the handler for that record, which then
    counts as handled. An exception raised out of ``__call__`` is the
    handler's failure: the stream's error policy applies and the record is
    not committed. With ``get_many``, ``cr`` is the batch (a list).
    """

    def __init__(
        self,
        *,
        next_call: NextMiddlewareCall,
        send: Send,
        stream: Stream,
        send_many: SendMany | None = None,
        **kwargs: Any,
    ) -> None:
        self.next_call = next_call
        self.send = send
        self.stream = stream
        engine = getattr(stream, "engine", None)
        if send_many is None and engine is not None:
            send_many = engine.send_many
        #: The engine's ``send_many`` (None for a stream outside an engine).
        self.send_many = send_many

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Raise if ``options`` are not valid; called by ``Middleware(cls, **options)``,
        so a mistake fails where the stream is declared."""

    async def __call__(self, cr: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class MiddlewareProtocol(Protocol):
    """What a middleware is: built once per stream start with the next callable of
    the chain, the engine's ``send`` and ``send_many``, the stream, and its own
    options; then awaited with each record (or batch). Whatever ``__call__``
    returns goes back to the previous middleware, so end it with
    ``return await self.next_call(cr)``. Subclass :class:`BaseMiddleware` to get
    this constructor.
    """

    next_call: NextMiddlewareCall
    send: Send
    stream: Stream

    def __init__(
        self,
        *,
        next_call: NextMiddlewareCall,
        send: Send,
        stream: Stream,
        send_many: SendMany,
        **kwargs: Any,
    ) -> None: ...

    async def __call__(self, cr: Any) -> Any: ...


class ExceptionMiddleware(BaseMiddleware):
    """The outermost link of every chain: an exception no middleware caught
    reaches the stream, which applies its ``error_policy`` (see
    :class:`kstreams.StreamErrorPolicy`).

    kstreams applies the policy in the stream itself, so every stream has this
    behaviour without the class in its chain; adding it changes nothing but
    the notes it puts on the exception (the stream and its topics), which
    show in the traceback.
    """

    async def __call__(self, cr: Any) -> Any:
        try:
            return await self.next_call(cr)
        except Exception as exc:
            exc.add_note(f"stream {self.stream.name!r} consuming {self.stream.topics}")
            raise


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


__all__ = [
    "BaseMiddleware",
    "ExceptionMiddleware",
    "Middleware",
    "MiddlewareProtocol",
    "NextMiddlewareCall",
]
