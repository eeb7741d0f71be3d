"""Backends: pass an instance to ``create_engine(backend=...)``, or a name."""

from __future__ import annotations

import os

from kstreams.backends import kafka
from kstreams.backends.settings import Aiokafka, Confluent, Kafka, Memory
from kstreams.exceptions import ConfigError
from kstreams.ports import Backend

BACKEND_NAMES = ("aiokafka", "confluent", "memory")

__all__ = [
    "BACKEND_NAMES",
    "Aiokafka",
    "Confluent",
    "Kafka",
    "Memory",
    "kafka",
    "resolve_backend",
]


def resolve_backend(backend: Backend | str | None = None) -> Backend:
    """An instance is used as is; a name, or ``$KSTREAMS_BACKEND`` when omitted,
    builds default settings of that backend."""
    if backend is None:
        backend = os.environ.get("KSTREAMS_BACKEND", "aiokafka")
    if not isinstance(backend, str):
        return backend
    name = backend.strip().lower()
    if name == "aiokafka":
        return Aiokafka()
    if name == "confluent":
        return Confluent()
    if name == "memory":
        return Memory()
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
