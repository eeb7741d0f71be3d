"""How payloads become bytes and back."""

from __future__ import annotations

from typing import Any, Protocol

from kstreams.records import ConsumerRecord


class Serializer(Protocol):
    """Turns a payload into the bytes ``engine.send`` produces."""

    async def serialize(
        self,
        payload: Any,
        headers: dict[str, Any] | None = None,
        serializer_kwargs: dict[str, Any] | None = None,
    ) -> bytes: ...


class Deserializer(Protocol):
    """Turns a consumed record into the record a handler receives."""

    async def deserialize(
        self, consumer_record: ConsumerRecord[Any, Any], **kwargs: Any
    ) -> ConsumerRecord[Any, Any]: ...


def __getattr__(name: str) -> Any:
    # kpn/kstreams' name for the "use the engine's serializer" default of send();
    # looked up lazily because the producer module imports this one.
    if name == "NO_DEFAULT":
        from kstreams.producer import DEFAULT

        return DEFAULT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
