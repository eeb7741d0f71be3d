"""Record values validated into the model a handler's annotation names.

A handler annotated ``cr: ConsumerRecord[bytes, Order]`` (or
``list[ConsumerRecord[bytes, Order]]``), where ``Order`` is a pydantic model,
receives records whose value is an ``Order``: JSON bytes or text are
validated with ``Order.model_validate_json``, anything else (a dict from the
engine's deserializer, say) with ``Order.model_validate``. The key is
validated the same way when its type is a model. Any other type argument
(``bytes``, ``Any``, a ``TypeVar``) is left alone, and such a handler pays
nothing.

Validation runs innermost, after the middlewares, on a copy of the record:
a failure is a ``DeserializationError`` that the middlewares see (the
dead-letter middleware sets the record aside with its original bytes) and
that the stream's error policy handles like any other handler error.
pydantic is never imported here: a model is anything with the two
``model_validate*`` class methods.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import Any

from kstreams.exceptions import DeserializationError
from kstreams.records import ConsumerRecord, copy_record


def is_model(tp: Any) -> bool:
    """A pydantic model class (found by its validation class methods)."""
    return (
        isinstance(tp, type)
        and callable(getattr(tp, "model_validate", None))
        and callable(getattr(tp, "model_validate_json", None))
    )


def record_models(annotation: Any) -> tuple[Any, Any]:
    """The (key, value) models of ``ConsumerRecord[K, V]`` or a list of it; None where none."""
    origin = typing.get_origin(annotation)
    if origin is not None and origin is not ConsumerRecord:
        args = typing.get_args(annotation)
        annotation = args[0] if len(args) == 1 else None
        origin = typing.get_origin(annotation)
    if origin is not ConsumerRecord:
        return None, None
    args = typing.get_args(annotation)
    if len(args) != 2:
        return None, None
    key, value = args
    return (key if is_model(key) else None), (value if is_model(value) else None)


def _validate(model: Any, data: Any, what: str, record: ConsumerRecord[Any, Any]) -> Any:
    if data is None or isinstance(data, model):
        return data
    try:
        if isinstance(data, bytes | bytearray | str):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise DeserializationError(
            f"record {record.topic}[{record.partition}]@{record.offset}: the {what} is not a "
            f"valid {model.__name__}: {exc}"
        ) from exc


def converter(
    key_model: Any, value_model: Any
) -> Callable[[ConsumerRecord[Any, Any]], ConsumerRecord[Any, Any]]:
    """A function from a record to a copy of it with the key and value validated."""

    def convert(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
        value = record.value
        if value_model is not None:
            value = _validate(value_model, value, "value", record)
        key = record.key
        if key_model is not None:
            key = _validate(key_model, key, "key", record)
        return copy_record(record, key=key, value=value)

    return convert


def validating(
    call: Callable[[Any], Awaitable[Any]], key_model: Any, value_model: Any, *, batch: bool
) -> Callable[[Any], Awaitable[Any]]:
    """``call`` (taking a record, or a batch) behind validation of its records."""
    convert = converter(key_model, value_model)
    if batch:

        def call_batch(records: Any) -> Awaitable[Any]:
            return call([convert(record) for record in records])

        return call_batch

    def call_one(record: Any) -> Awaitable[Any]:
        return call(convert(record))

    return call_one
