"""aiokafka errors translated to :mod:`kstreams.exceptions`, and how its clients start and close."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka.errors as aioerrors
import anyio

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.closing import close_shielded
from kstreams.backends.connecting import (
    RETRY_EVERY_S,
    log_attempt,
    servers_text,
    start_timeout_s,
    unreachable,
)

# aiokafka's ConsumerStoppedError and IllegalOperation do not derive from its KafkaError.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    aioerrors.KafkaError,
    aioerrors.ConsumerStoppedError,
    aioerrors.IllegalOperation,
)

ERROR_MAP: dict[type[BaseException], type[kerrors.KafkaError]] = {
    aioerrors.ConsumerStoppedError: kerrors.ConsumerStoppedError,
    aioerrors.IllegalOperation: kerrors.IllegalOperationError,
    aioerrors.IllegalStateError: kerrors.IllegalStateError,
    aioerrors.CommitFailedError: kerrors.CommitFailedError,
    aioerrors.NoOffsetForPartitionError: kerrors.NoOffsetForPartitionError,
    aioerrors.OffsetOutOfRangeError: kerrors.OffsetOutOfRangeError,
    aioerrors.UnknownTopicOrPartitionError: kerrors.UnknownTopicOrPartitionError,
    aioerrors.RecordTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.MessageSizeTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.RecordListTooLargeError: kerrors.RecordTooLargeError,
    aioerrors.KafkaConnectionError: kerrors.KafkaConnectionError,
    aioerrors.NoBrokersAvailable: kerrors.KafkaConnectionError,
    aioerrors.KafkaUnavailableError: kerrors.KafkaConnectionError,
    # The node or the group's coordinator cannot be reached: the broker is
    # down or moving, as librdkafka's transport and coordinator errors say.
    aioerrors.NodeNotReadyError: kerrors.KafkaConnectionError,
    aioerrors.CoordinatorNotAvailableError: kerrors.KafkaConnectionError,
    aioerrors.NotCoordinatorError: kerrors.KafkaConnectionError,
    aioerrors.KafkaTimeoutError: kerrors.KafkaTimeoutError,
    aioerrors.RequestTimedOutError: kerrors.KafkaTimeoutError,
    aioerrors.ProducerClosed: kerrors.ProducerClosedError,
    aioerrors.ProducerFenced: kerrors.ProducerFencedError,
}


def translate(
    exc: BaseException,
    overrides: Mapping[type[BaseException], type[kerrors.KafkaError]] | None = None,
) -> kerrors.KafkaError:
    """The kstreams error for an aiokafka one: the nearest mapped class in its MRO, looked
    up in ``overrides`` (what an error means in one kind of call) before ``ERROR_MAP``."""
    message = str(exc) or type(exc).__name__
    for table in (overrides or {}, ERROR_MAP):
        for cls in type(exc).__mro__:
            target = table.get(cls)
            if target is not None:
                return target(message)
    return kerrors.KafkaError(message)


async def start_client(
    what: str,
    build: Callable[[], Any],
    options: dict[str, Any],
    prepare: Callable[[Any], None] | None = None,
) -> Any:
    """A started client from ``build()``, retried as :mod:`kstreams.backends.connecting` says.

    ``prepare`` is called with each client before its start (and its failure
    closes the client, as a failed start does).
    A client whose start failed cannot start again: each attempt builds a new one.
    Any other failure than an unreachable cluster is raised at once, translated.
    """
    servers = servers_text(options.get("bootstrap_servers"))
    bound_s = start_timeout_s(options.get("request_timeout_ms", 40000) / 1000)
    began = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        client = build()
        try:
            if prepare is not None:
                prepare(client)
            await client.start()
        except BaseException as exc:
            await close_shielded(client)
            if not isinstance(exc, CLIENT_ERRORS):
                raise
            error = translate(exc)
            if not isinstance(error, kerrors.KafkaConnectionError):
                raise error from exc
            waited = time.monotonic() - began
            if waited + RETRY_EVERY_S > bound_s:
                raise unreachable(what, servers, waited, exc) from exc
            log_attempt(what, servers, attempt, waited, exc)
            await anyio.sleep(RETRY_EVERY_S)
        else:
            return client
