"""Transactions on aiokafka: ``TransactionalProducerPort`` and ``group_metadata``.

Mixed into :class:`~kstreams.backends.aiokafka.producer.AiokafkaProducer` and
:class:`~kstreams.backends.aiokafka.consumer.AiokafkaConsumer`. aiokafka's
``send_offsets_to_transaction(offsets, group_id)`` carries no generation (it
has no KIP-447), so the group metadata's generation is not checked here: an
exactly-once stream fences zombies with one transactional id per input
partition instead (see :mod:`kstreams.transactions`).

aiokafka waits for its transaction steps with shielded futures that never
time out; each wait here is bounded by ``request_timeout_ms`` (40 s unless
given) and raises ``KafkaTimeoutError`` past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import aiokafka
import aiokafka.errors as aioerrors
from aiokafka.producer.transaction_manager import TransactionState

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.errors import CLIENT_ERRORS, translate
from kstreams.ports import GroupMetadata
from kstreams.records import TopicPartition

#: The errors of a transaction step that mean "this member is no longer in its group's
#: generation" (commit refused) or "a newer producer took the id" (fenced).
_TXN_ERRORS: dict[type[BaseException], type[kerrors.KafkaError]] = {
    aioerrors.ProducerFenced: kerrors.ProducerFencedError,
    aioerrors.InvalidProducerEpoch: kerrors.ProducerFencedError,
    aioerrors.TransactionalIdAuthorizationFailed: kerrors.ProducerFencedError,
    aioerrors.IllegalGenerationError: kerrors.CommitFailedError,
    aioerrors.UnknownMemberIdError: kerrors.CommitFailedError,
    aioerrors.RebalanceInProgressError: kerrors.CommitFailedError,
    aioerrors.CommitFailedError: kerrors.CommitFailedError,
}


def _translate(exc: BaseException) -> kerrors.KafkaError:
    return translate(exc, _TXN_ERRORS)


class AiokafkaTransactions:
    """``TransactionalProducerPort``'s methods, on the producer's ``_client``."""

    _client: Any
    _options: dict[str, Any]

    if TYPE_CHECKING:

        def _running(self) -> Any: ...

    def _txn_manager(self) -> Any:
        client = self._running()
        if self._options.get("transactional_id") is None:
            raise kerrors.IllegalOperationError(
                "transactions need a producer built with a transactional_id"
            )
        manager = client._txn_manager
        if manager.is_fatal_error():
            raise kerrors.ProducerFencedError(
                f"transactional_id {self._options['transactional_id']!r}: this producer was "
                "fenced by a newer one (or hit a fatal error): stop it"
            )
        return manager

    def _bound_s(self) -> float:
        return float(self._options.get("request_timeout_ms", 40000)) / 1000

    async def _wait(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(step), self._bound_s())
        except TimeoutError:
            raise kerrors.KafkaTimeoutError(
                f"{what} did not finish within {self._bound_s():g} s"
            ) from None
        except AssertionError as exc:
            # aiokafka asserts its transaction state transitions.
            raise kerrors.IllegalStateError(f"{what}: {exc}") from exc
        except CLIENT_ERRORS as exc:
            raise _translate(exc) from exc

    def _check_open(self, manager: Any, what: str) -> None:
        if manager.state is not TransactionState.IN_TRANSACTION:
            raise kerrors.IllegalStateError(f"{what} needs an open transaction")

    async def begin_transaction(self) -> None:
        manager = self._txn_manager()
        if manager.state is TransactionState.IN_TRANSACTION:
            raise kerrors.IllegalStateError("a transaction is already open")
        # aiokafka's start already waited for the producer id (registering the id,
        # fencing older producers of it); this returns at once then.
        await self._wait("registering the transactional id", manager.wait_for_pid())
        manager = self._txn_manager()
        if manager.state is not TransactionState.READY:
            raise kerrors.IllegalStateError(f"cannot begin a transaction in state {manager.state}")
        manager.begin_transaction()

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group: GroupMetadata
    ) -> None:
        manager = self._txn_manager()
        self._check_open(manager, "send_offsets_to_transaction")
        if not offsets:
            return
        to_commit = {
            aiokafka.TopicPartition(tp.topic, tp.partition): offset
            for tp, offset in offsets.items()
        }
        await self._wait(
            "send_offsets_to_transaction",
            self._client.send_offsets_to_transaction(to_commit, group.group_id),
        )

    async def commit_transaction(self) -> None:
        manager = self._txn_manager()
        if manager.state not in (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR):
            raise kerrors.IllegalStateError("commit_transaction needs an open transaction")
        if manager.state is TransactionState.ABORTABLE_ERROR:
            error = manager.wait_for_transaction_end().exception()
            raise (
                _translate(error)
                if error is not None
                else kerrors.IllegalStateError("the transaction failed and can only be aborted")
            )
        await self._wait("commit_transaction", self._client.commit_transaction())

    async def abort_transaction(self) -> None:
        manager = self._txn_manager()
        if manager.state not in (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR):
            raise kerrors.IllegalStateError("abort_transaction needs an open transaction")
        await self._wait("abort_transaction", self._client.abort_transaction())


class AiokafkaGroupMetadata:
    """``TransactionalConsumerPort.group_metadata`` on the consumer's ``_client``."""

    _client: Any
    _group_id: str | None
    _options: dict[str, Any]

    def group_metadata(self) -> GroupMetadata:
        if self._group_id is None:
            raise kerrors.IllegalOperationError("group_metadata needs a consumer with a group_id")
        client = self._client
        if client is None:
            raise kerrors.IllegalStateError("the consumer is not started")
        coordinator = getattr(client, "_coordinator", None)
        generation = getattr(coordinator, "generation", -1)
        member_id = getattr(coordinator, "member_id", "") or ""
        return GroupMetadata(
            self._group_id,
            -1 if generation is None else int(generation),
            member_id,
            self._options.get("group_instance_id"),
        )
