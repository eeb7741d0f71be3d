"""The aiokafka adapter: the ports on AIOKafkaConsumer and AIOKafkaProducer.

:mod:`.consumer` and :mod:`.producer` hold the adapters; :mod:`.errors` the
translation of aiokafka's errors and how its clients start (retried, bounded)
and close.
"""

from __future__ import annotations

from kstreams.backends.aiokafka.consumer import AiokafkaConsumer
from kstreams.backends.aiokafka.producer import AiokafkaProducer

__all__ = ["AiokafkaConsumer", "AiokafkaProducer"]
