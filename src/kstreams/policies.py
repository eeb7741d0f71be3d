"""What a stream does when its handler raises."""

from __future__ import annotations

import enum


class StreamErrorPolicy(enum.StrEnum):
    """What a stream does when its handler, a middleware or its deserializer
    (``DeserializationError``) raises. The failing record's offset is never
    committed, whatever the policy.

    * ``STOP``: stop this stream and log the exception (it stays on
      ``stream.error``); other streams go on.
    * ``RESTART``: close the consumer and start a new one, which resumes at
      the last committed offset, so the failing record is read again; restarts
      back off exponentially (0.1 s doubling up to 30 s, from 0.1 s again once
      a record is handled) so a record that always fails costs little; ``stop()``
      interrupts a back-off.
    * ``STOP_ENGINE``: stop every stream of the engine, then its producer.
    * ``STOP_APPLICATION``: stop the engine, then send the process SIGTERM.
    """

    STOP = "STOP"
    RESTART = "RESTART"
    STOP_ENGINE = "STOP_ENGINE"
    STOP_APPLICATION = "STOP_APPLICATION"
