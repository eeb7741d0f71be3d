"""The confluent-kafka (librdkafka) backend.

librdkafka calls block, so each consumer is owned by one worker thread that
makes every call to it, close included; the event loop only submits jobs and
awaits them. Modules, one concept each:

- :mod:`.config` and :mod:`.security`: aiokafka keyword arguments translated to
  librdkafka properties (pure, importable without confluent-kafka);
- :mod:`.worker`: the thread that owns a consumer;
- :mod:`.consumer` (event-loop side) and :mod:`.consumer_thread` (worker side);
- :mod:`.producer`; :mod:`.errors`: librdkafka errors as kstreams ones;
- :mod:`.messages`: librdkafka structs to kstreams' value types.

The adapters are imported on first access, so ``config`` works without
confluent-kafka installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kstreams.backends.confluent.consumer import ConfluentConsumer
    from kstreams.backends.confluent.errors import translate
    from kstreams.backends.confluent.producer import ConfluentProducer

_LAZY = {
    "ConfluentConsumer": "kstreams.backends.confluent.consumer",
    "ConfluentProducer": "kstreams.backends.confluent.producer",
    "translate": "kstreams.backends.confluent.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ConfluentConsumer", "ConfluentProducer", "translate"]
