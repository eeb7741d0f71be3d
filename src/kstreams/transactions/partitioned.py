"""An exactly-once stream's transactions: one transactional producer per input partition.

Why per partition. A zombie (a member paused or partitioned away that lost a
partition in a rebalance) must never commit a transaction for it. librdkafka
sends the consumer's generation with the offsets (KIP-447) and the group
refuses a stale one; aiokafka sends no generation. What fences a zombie on
every client is the transactional id: the partition's new owner starts a
producer with the partition's id, which bumps the id's epoch, aborts what
the zombie left open and makes every later call of the zombie's producer
fail with ``ProducerFencedError``. The id is stable,
``f"{base}.{topic}-{partition}"``, so a member restarted after a SIGKILL
resolves its predecessor's open transaction the same way (some brokers, as
noida-db, never time one out).

Order on assignment: the partition's producer is started (fencing) before
its first record is read, and the group's committed offset is read again
after that, since the zombie may have committed just before it was fenced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from kstreams import fetcher
from kstreams.exceptions import IllegalStateError, KafkaError, StreamError
from kstreams.producer import Producer
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from kstreams.consumer import StreamConsumer
    from kstreams.ports import (
        Backend,
        GroupMetadata,
        TransactionalConsumerPort,
        TransactionalProducerPort,
    )
    from kstreams.streams import Stream

logger = logging.getLogger("kstreams.transactions")

#: Bound of starting (fencing), committing or closing one partition's producer.
STEP_TIMEOUT_S = 60.0


def transactional_id(stream: Stream, tp: TopicPartition) -> str:
    """The stable transactional id of ``stream``'s producer for input partition ``tp``."""
    base = stream.transactional_id or f"{stream.group_id}.{stream.name}"
    return f"{base}.{tp.topic}-{tp.partition}"


async def _bounded(what: str, step: Awaitable[Any], timeout_s: float = STEP_TIMEOUT_S) -> Any:
    try:
        return await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        raise KafkaError(f"{what} did not finish within {timeout_s:g} s") from None


class PartitionTransaction:
    """One input partition's transactional producer and the transaction open on it."""

    def __init__(self, tp: TopicPartition, producer: Producer, transactional_id: str) -> None:
        self.tp = tp
        self.producer = producer
        self.transactional_id = transactional_id
        #: Something was sent in the open transaction: commit it even without offsets.
        self.sent = False
        self.open = False

    @property
    def _port(self) -> TransactionalProducerPort:
        return cast("TransactionalProducerPort", self.producer._require_port())

    async def start(self) -> None:
        """Register the id (fencing older producers of it) and open a transaction."""
        await self.producer.start()
        await self._port.begin_transaction()
        self.open = True

    async def commit(self, offset: int | None, group: GroupMetadata) -> None:
        """Commit what was sent with the partition's next-to-read ``offset``, then open the
        next transaction; on failure abort it and raise (nothing of it is visible)."""
        if offset is None and not self.sent:
            return
        port = self._port
        try:
            if offset is not None:
                await port.send_offsets_to_transaction({self.tp: offset}, group)
            await port.commit_transaction()
        except KafkaError:
            await self.abort()
            raise
        self.sent = False
        self.open = False
        await port.begin_transaction()
        self.open = True

    async def abort(self) -> None:
        """Drop the open transaction (its outputs stay invisible) and open the next one."""
        port = self._port
        self.sent = False
        if self.open:
            self.open = False
            try:
                await port.abort_transaction()
            except KafkaError as exc:
                logger.warning("transactional id %s: abort failed: %r", self.transactional_id, exc)
        await port.begin_transaction()
        self.open = True

    async def close(self) -> None:
        """Abort what is still open (a commit came first where one was due) and stop."""
        try:
            if self.open and self.producer.started:
                self.open = False
                try:
                    await self._port.abort_transaction()
                except KafkaError as exc:
                    logger.warning(
                        "transactional id %s: abort on close failed: %r", self.transactional_id, exc
                    )
        finally:
            await self.producer.stop()


class StreamTransaction:
    """The transactions of one exactly-once stream's consumer, one per owned partition.

    The handler's sends go to the producer of the partition whose record is
    being handled (:attr:`handling`, set by the stream between records).
    """

    def __init__(
        self, stream: Stream, backend: Backend, consumer: StreamConsumer, port: Any
    ) -> None:
        self.stream = stream
        self.backend = backend
        self.consumer = consumer
        self._group = cast("TransactionalConsumerPort", port)
        engine = stream.engine
        self._options = dict(engine.producer.options) if engine is not None else {}
        # A transactional producer is idempotent and acknowledged by all replicas: the
        # engine's own acks and idempotence settings are not its to follow.
        self._options.pop("acks", None)
        self._options.pop("enable_idempotence", None)
        self._serializer = engine.serializer if engine is not None else None
        self.partitions: dict[TopicPartition, PartitionTransaction] = {}
        #: The input partition of the record being handled.
        self.handling: TopicPartition | None = None
        self._lock = asyncio.Lock()
        self._on_stop: list[Callable[[], None]] = []

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the transactions stop (a commit timer is cancelled)."""
        self._on_stop.append(callback)

    # -- what the handler's sends use ------------------------------------------

    def _current(self) -> PartitionTransaction:
        tp = self.handling
        txn = None if tp is None else self.partitions.get(tp)
        if txn is None:
            raise StreamError(
                f"stream {self.stream.name!r}: no transaction for input partition {tp} "
                "(sends of an exactly-once stream belong to the record being handled)"
            )
        return txn

    @property
    def producer(self) -> Producer:
        """The producer of the transaction of the record being handled."""
        return self._current().producer

    def mark_sent(self) -> None:
        """Something is being sent in the open transaction: commit it even without offsets."""
        self._current().sent = True

    # -- rebalances ---------------------------------------------------------------

    async def on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Start the new partitions' producers (fencing their former owners), then read
        their committed offsets again and start from there."""
        new = [tp for tp in sorted(assigned) if tp not in self.partitions]
        if not new:
            return
        consumer = self.consumer
        # Held before the first await: nothing of them is handed out (a client may
        # fetch while this runs) until their producers fenced the former owners.
        held = [tp for tp in new if tp not in consumer.paused()]
        if held:
            consumer.pause(*held)
        try:
            started = await asyncio.gather(*(self._start(tp) for tp in new), return_exceptions=True)
            for tp, outcome in zip(new, started, strict=True):
                if isinstance(outcome, BaseException):
                    logger.error(
                        "stream %r: the transactional producer of %s did not start: %r",
                        self.stream.name,
                        tp,
                        outcome,
                    )
                    continue
                try:
                    offset = await consumer.committed(tp)
                except KafkaError as exc:
                    # Without the offset its former owner committed last, the partition
                    # could be read from before it: it gets no transaction (its records fail).
                    logger.error(
                        "stream %r: the committed offset of %s could not be read: %r",
                        self.stream.name,
                        tp,
                        exc,
                    )
                    await self._close_quietly(self.partitions.pop(tp))
                    continue
                if offset is not None and tp in consumer.assignment():
                    consumer.seek(tp, offset)
        finally:
            still = [tp for tp in held if tp in consumer.assignment()]
            if still and not consumer.closed:
                consumer.resume(*still)

    async def _start(self, tp: TopicPartition) -> None:
        txn_id = transactional_id(self.stream, tp)
        options = {**self._options, "transactional_id": txn_id}
        txn = PartitionTransaction(
            tp, Producer(self.backend, serializer=self._serializer, options=options), txn_id
        )
        try:
            await _bounded(f"starting transactional id {txn_id}", txn.start())
        except BaseException:
            await self._close_quietly(txn)
            raise
        self.partitions[tp] = txn

    async def on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Close the revoked partitions' producers (their transactions were committed first)."""
        async with self._lock:
            gone = [self.partitions.pop(tp) for tp in sorted(revoked) if tp in self.partitions]
        await asyncio.gather(*(self._close_quietly(txn) for txn in gone))

    async def _close_quietly(self, txn: PartitionTransaction) -> None:
        try:
            # As a client's close on stop: the stop's bound holds for exactly-once too.
            await _bounded(
                f"closing transactional id {txn.transactional_id}",
                txn.close(),
                fetcher.CLOSE_TIMEOUT_S,
            )
        except Exception as exc:
            logger.warning("transactional id %s: close failed: %r", txn.transactional_id, exc)

    # -- commit, abort, stop ----------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit each partition's transaction with that partition's offset, together.

        Raises the first failure once every partition was tried; a failed
        partition's transaction is aborted (see :meth:`PartitionTransaction.commit`).
        """
        async with self._lock:
            owned = self.consumer.assignment()
            # A partition revoked meanwhile was committed by its revoke: passed over.
            offsets = {tp: o for tp, o in offsets.items() if tp in self.partitions or tp in owned}
            missing = sorted(tp for tp in offsets if tp not in self.partitions)
            if missing:
                raise IllegalStateError(
                    f"stream {self.stream.name!r}: no transaction for {missing}: their offsets "
                    "cannot be committed (the producer did not start)"
                )
            due = [t for tp, t in self.partitions.items() if tp in offsets or t.sent]
            if not due:
                return
            group = self._group.group_metadata()
            outcomes = await asyncio.gather(
                *(
                    _bounded(f"committing {t.transactional_id}", t.commit(offsets.get(t.tp), group))
                    for t in due
                ),
                return_exceptions=True,
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def abort(self) -> None:
        """Abort every open transaction (their outputs stay invisible); open new ones."""
        async with self._lock:
            outcomes = await asyncio.gather(
                *(
                    _bounded(f"aborting {t.transactional_id}", t.abort())
                    for t in self.partitions.values()
                ),
                return_exceptions=True,
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def stop(self) -> None:
        """Abort what is still open (a stop commits first: this is what it left) and close."""
        callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()
        async with self._lock:
            gone, self.partitions = list(self.partitions.values()), {}
        await asyncio.gather(*(self._close_quietly(txn) for txn in gone))
