"""What a handler asks for, read from its annotations once, at declaration."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kstreams.exceptions import HandlerSignatureError, StreamError
from kstreams.records import ConsumerRecord
from kstreams.value_types import record_models, validating


class HandlerKind(enum.Enum):
    STREAM = "stream"  # async def f(stream): async for cr in stream: ...
    RECORD = "record"  # async def f(cr: ConsumerRecord, ...): one call per record
    BATCH = "batch"  # async def f(crs: list[ConsumerRecord], ...): one call per batch


@dataclass(frozen=True)
class HandlerSpec:
    kind: HandlerKind
    params: tuple[str, ...]  # per positional parameter: "record", "records", "stream" or "send"
    is_generator: bool
    #: pydantic models the record's key and value are validated into (see kstreams.value_types).
    key_model: Any = None
    value_model: Any = None


_NAMES = {
    "ConsumerRecord": "record",
    "Stream": "stream",
    "Send": "send",
    "SendMany": "send_many",
}


def _classify(annotation: Any) -> str | None:
    from kstreams.streams import Stream
    from kstreams.types import Send, SendMany

    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        for prefix in ("list[", "List[", "Sequence[", "typing.List[", "typing.Sequence["):
            if text.startswith(prefix) and "ConsumerRecord" in text:
                return "records"
        base = text.split("[", 1)[0].rsplit(".", 1)[-1]
        return _NAMES.get(base, "unknown")
    origin = typing.get_origin(annotation)
    if origin in (list, Sequence, typing.List, typing.Sequence):  # noqa: UP006
        args = typing.get_args(annotation)
        if args and (typing.get_origin(args[0]) or args[0]) is ConsumerRecord:
            return "records"
        return "unknown"
    target = origin or annotation
    if target is ConsumerRecord:
        return "record"
    if isinstance(target, type) and issubclass(target, Stream):
        return "stream"
    if target is Send:
        return "send"
    if target is SendMany:
        return "send_many"
    return "unknown"


def inspect_handler(func: Callable[..., Any]) -> HandlerSpec:
    """Raise ``HandlerSignatureError`` unless kstreams can call ``func``."""
    name = getattr(func, "__qualname__", repr(func))
    is_generator = inspect.isasyncgenfunction(func)
    if not (is_generator or inspect.iscoroutinefunction(func)):
        raise HandlerSignatureError(f"stream handler {name} must be an 'async def' function")
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        # Names only importable under TYPE_CHECKING: fall back to the text.
        hints = {}
    params = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if not params:
        raise HandlerSignatureError(f"stream handler {name} must take at least one parameter")
    kinds = [_classify(hints.get(p.name, p.annotation)) for p in params]
    if len(params) == 1 and kinds[0] in (None, "stream"):
        return HandlerSpec(HandlerKind.STREAM, ("stream",), is_generator)
    for param, kind in zip(params, kinds, strict=True):
        if kind in (None, "unknown"):
            shown = "no annotation" if kind is None else f"annotation {param.annotation!r}"
            raise HandlerSignatureError(
                f"cannot inject parameter {param.name!r} of {name} ({shown}); annotate it with "
                "ConsumerRecord, list[ConsumerRecord], Stream, Send or SendMany"
            )
    if "record" in kinds and "records" in kinds:
        raise HandlerSignatureError(f"{name} asks for a record and a batch; choose one")
    models: tuple[Any, Any] = (None, None)
    for param, kind in zip(params, kinds, strict=True):
        if kind in ("record", "records"):
            models = record_models(hints.get(param.name, param.annotation))
    if "records" in kinds:
        return HandlerSpec(HandlerKind.BATCH, tuple(k for k in kinds if k), is_generator, *models)
    if "record" in kinds:
        return HandlerSpec(HandlerKind.RECORD, tuple(k for k in kinds if k), is_generator, *models)
    raise HandlerSignatureError(
        f"{name} takes no ConsumerRecord: annotate one parameter with ConsumerRecord "
        "(or list[ConsumerRecord]), or take only the stream"
    )


def bind(
    spec: HandlerSpec, func: Callable[..., Any], *, stream: Any, send: Any
) -> Callable[[Any], Awaitable[Any]]:
    """A one-argument callable passing the record (or batch) and what else ``func`` wants."""
    call = _bind(spec, func, stream=stream, send=send)
    if spec.key_model is None and spec.value_model is None:
        return call
    return validating(call, spec.key_model, spec.value_model, batch=spec.kind is HandlerKind.BATCH)


def _bind(
    spec: HandlerSpec, func: Callable[..., Any], *, stream: Any, send: Any
) -> Callable[[Any], Awaitable[Any]]:
    params = spec.params
    if params in (("record",), ("records",)):
        return func
    values = {"stream": stream, "send": send, "send_many": _send_many(stream)}
    if len(params) == 2:
        if params[0] in ("record", "records"):
            other = values[params[1]]
            return lambda cr: func(cr, other)
        first = values[params[0]]
        return lambda cr: func(first, cr)
    slot = next(i for i, p in enumerate(params) if p in ("record", "records"))
    template = [values.get(p) for p in params]

    def call(cr: Any) -> Awaitable[Any]:
        args = template.copy()
        args[slot] = cr
        result: Awaitable[Any] = func(*args)
        return result

    return call


def _send_many(stream: Any) -> Any:
    engine = getattr(stream, "engine", None)
    if engine is not None:
        return engine.send_many
    return _no_engine_send_many


async def _no_engine_send_many(*args: Any, **kwargs: Any) -> Any:
    raise StreamError("this stream is not part of an engine, it cannot send_many")
