"""Producer settings as a value, under the name kpn/kstreams users give them.

::

    settings = ProducerSettings(client_id="orders", linger_ms=10)
    engine = create_engine(title="shop", producer_settings=settings)

They are AIOKafkaProducer keyword arguments (translated on the confluent
backend, as ``producer_options`` are); only the ones that differ from the
defaults below are passed on, so the backend's own defaults apply to the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kstreams.exceptions import ConfigError

_ACKS = (0, 1, "all")
_COMPRESSION = (None, "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True, kw_only=True)
class ProducerSettings:
    """The engine producer's settings; ``producer_options`` takes the same names."""

    client_id: str | None = None
    metadata_max_age_ms: int = 300_000
    request_timeout_ms: int = 40_000
    acks: Literal[0, 1, "all"] = 1
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    max_batch_size: int = 16_384
    partitioner: Callable[..., int] | None = None
    max_request_size: int = 1_048_576
    linger_ms: int = 0
    retry_backoff_ms: int = 100
    connections_max_idle_ms: int | None = 540_000
    enable_idempotence: bool = False
    transactional_id: str | None = None
    transaction_timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.acks not in _ACKS:
            raise ConfigError(f"acks must be one of {_ACKS}, got {self.acks!r}")
        if self.compression_type not in _COMPRESSION:
            raise ConfigError(
                f"compression_type must be one of {_COMPRESSION}, got {self.compression_type!r}"
            )
        if self.enable_idempotence and self.acks != "all":
            raise ConfigError(f"enable_idempotence=True needs acks='all', got acks={self.acks!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            numeric = field.name.endswith(("_ms", "_size"))
            if numeric and value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{field.name} must be an int >= 0, got {value!r}")

    def producer_options(self) -> dict[str, Any]:
        """The settings that differ from the defaults, as producer keyword arguments."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        }


__all__ = ["ProducerSettings"]
