"""Middlewares: code that wraps a stream's handler, outermost first.

The classes live in :mod:`kstreams.middleware.middleware`, the module path
kpn/kstreams documents them under.
"""

from kstreams.middleware.middleware import (
    BaseMiddleware,
    ExceptionMiddleware,
    Middleware,
    MiddlewareProtocol,
    NextMiddlewareCall,
)

__all__ = [
    "BaseMiddleware",
    "ExceptionMiddleware",
    "Middleware",
    "MiddlewareProtocol",
    "NextMiddlewareCall",
]
