"""The transaction coordinator of a memory cluster: transactional ids, epochs, fencing.

Kafka semantics, kept small: starting a producer with a ``transactional_id``
(``init_transactions``) bumps the id's epoch, which fences every older
producer of that id and aborts the transaction it left open. A transaction
writes its records to the logs as it goes, tagged with the transaction; its
consumed offsets wait beside it. Commit and abort happen in one step of the
event loop: a marker on every partition the transaction wrote to, and on
commit its offsets become the groups' committed offsets, all at once. An
open transaction is aborted after ``transaction_timeout_ms``, fencing its
producer, as the broker does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kstreams.backends.memory.log import ABORTED, COMMITTED, PartitionLog, TxnMark
from kstreams.exceptions import (
    CommitFailedError,
    IllegalStateError,
    OffsetOutOfRangeError,
    ProducerFencedError,
)
from kstreams.ports import GroupMetadata
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from kstreams.backends.memory.cluster import MemoryCluster

logger = logging.getLogger("kstreams.backends.memory")


class Transaction:
    """One open transaction: where it wrote, and the offsets it will commit."""

    __slots__ = ("doomed", "mark", "offsets", "partitions", "timer")

    def __init__(self) -> None:
        self.mark = TxnMark()
        self.partitions: set[PartitionLog] = set()
        self.offsets: dict[str, dict[TopicPartition, int]] = {}
        # Why the transaction can only be aborted, once a step of it failed.
        self.doomed: str | None = None
        self.timer: asyncio.TimerHandle | None = None


class TransactionalId:
    """The coordinator's state of one transactional id."""

    __slots__ = ("current", "epoch", "name", "producer_id")

    def __init__(self, name: str, producer_id: int) -> None:
        self.name = name
        self.producer_id = producer_id
        self.epoch = -1
        self.current: Transaction | None = None


class Session:
    """A producer's hold on a transactional id, at the epoch it was given."""

    __slots__ = ("coordinator", "epoch", "state", "timeout_s")

    def __init__(
        self, coordinator: TransactionCoordinator, state: TransactionalId, timeout_s: float
    ) -> None:
        self.coordinator = coordinator
        self.state = state
        self.epoch = state.epoch
        self.timeout_s = timeout_s

    def check(self) -> None:
        """Raise ``ProducerFencedError`` once a newer producer took the id."""
        if self.epoch != self.state.epoch:
            raise ProducerFencedError(
                f"transactional_id {self.state.name!r} was taken by a newer producer "
                f"(epoch {self.state.epoch}, this producer's is {self.epoch}), or its "
                "transaction timed out: stop this producer"
            )

    def current(self) -> Transaction:
        """The open transaction; ``IllegalStateError`` when there is none."""
        self.check()
        txn = self.state.current
        if txn is None:
            raise IllegalStateError(
                f"transactional_id {self.state.name!r} has no open transaction: "
                "call begin_transaction first"
            )
        return txn

    def begin(self) -> None:
        self.check()
        if self.state.current is not None:
            raise IllegalStateError(
                f"transactional_id {self.state.name!r} already has an open transaction"
            )
        txn = self.state.current = Transaction()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        txn.timer = loop.call_later(self.timeout_s, self.coordinator.expire, self.state, txn)

    def add_offsets(self, offsets: Mapping[TopicPartition, int], group: GroupMetadata) -> None:
        txn = self.current()
        cluster = self.coordinator.cluster
        for tp, offset in offsets.items():
            cluster._partition(tp)
            if type(offset) is not int or offset < 0:
                raise OffsetOutOfRangeError(f"cannot commit offset {offset!r} for {tp}")
        known = cluster._groups.get(group.group_id)
        if known is None or not known.is_current(group.member_id, group.generation_id):
            # KIP-447: a member of an older generation (a zombie that lost its
            # partitions in a rebalance) cannot commit through a transaction.
            current = "none" if known is None else known.generation
            txn.doomed = (
                f"member {group.member_id} of group {group.group_id!r} is not in the "
                f"group's generation {current} (it had {group.generation_id})"
            )
            raise CommitFailedError(f"send_offsets_to_transaction refused: {txn.doomed}")
        txn.offsets.setdefault(group.group_id, {}).update(offsets)

    def commit(self) -> None:
        txn = self.current()
        if txn.doomed is not None:
            raise CommitFailedError(f"the transaction must be aborted: {txn.doomed}")
        self.coordinator.finish(self.state, txn, committed=True)

    def abort(self) -> None:
        self.coordinator.finish(self.state, self.current(), committed=False)


class TransactionCoordinator:
    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster
        self._ids: dict[str, TransactionalId] = {}
        self._producer_ids = itertools.count(1000)

    def init(self, transactional_id: str, timeout_s: float) -> Session:
        """Give a starting producer the id at a new epoch; abort what an older one left open."""
        state = self._ids.get(transactional_id)
        if state is None:
            state = self._ids[transactional_id] = TransactionalId(
                transactional_id, next(self._producer_ids)
            )
        if state.current is not None:
            self.finish(state, state.current, committed=False)
        state.epoch += 1
        return Session(self, state, timeout_s)

    def finish(self, state: TransactionalId, txn: Transaction, *, committed: bool) -> None:
        if txn.timer is not None:
            txn.timer.cancel()
        state.current = None
        txn.mark.state = COMMITTED if committed else ABORTED
        for log in txn.partitions:
            log.end_transaction(txn.mark, committed=committed)
        if committed:
            for group_id, offsets in txn.offsets.items():
                self.cluster._group(group_id).committed.update(offsets)

    def expire(self, state: TransactionalId, txn: Transaction) -> None:
        if state.current is not txn:
            return
        logger.warning(
            "transaction of transactional_id %r timed out; aborted, and its producer fenced",
            state.name,
        )
        self.finish(state, txn, committed=False)
        state.epoch += 1
