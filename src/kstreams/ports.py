"""The two ports the core is written against, and the backend that builds them.

This module is the contract every adapter (``kstreams.backends.*``) fulfils.
The conformance suite in ``tests/conformance`` checks it on each backend.

What an offset means
    A *record offset* is the position of one record in its partition log,
    counted from 0. A *committed offset* and a *position* are the offset of
    the **next** record to read: committing ``n`` means records ``< n`` of that
    partition are done.

Ordering
    Within one partition, ``getmany`` returns records in offset order, with
    no gaps other than those in the log itself, and never a record twice
    unless the position was moved back (``seek``, rebalance, restart).
    Nothing is promised across partitions.

Records
    ``getmany`` returns :class:`~kstreams.records.ConsumerRecord` objects:
    mutable and slotted, ``key``/``value`` the bytes as stored (``None`` for
    null), ``headers`` a tuple of ``(str, bytes | None)`` pairs in wire order.
    Each object is new for that call, and the adapter keeps no reference to
    it once returned: from then on it belongs to the caller (the core, then
    the handler), which may change its fields. Changing a record never changes
    the log, nor a record another call or consumer returned; the memory
    backend, whose log holds records too, hands out a copy per fetch. The
    core, not the adapter, keeps whatever it needs unchanged (the raw bytes
    for a dead letter) before a deserializer or handler sees the record.
    Adapters build each record once, from what the client decoded, and copy
    it no further: the aiokafka adapter inside aiokafka's own batch decoding,
    in place of aiokafka's record; the confluent adapter from librdkafka's
    ``Message``, through its getters, on the event loop.

Commits
    The client never commits on its own: adapters keep the client's
    auto-commit off. The core decides what to commit and calls ``commit``.

Rebalances
    Assignment is eager: on every rebalance the whole previous assignment is
    revoked, then the new one assigned. The listener given to ``subscribe``
    is awaited, ``on_partitions_revoked`` first, and the adapter does not let
    the rebalance go on until it returns, so offsets committed in it are seen
    by the next owner. Inside the callbacks, consumer calls are allowed.

Errors
    Every method raises only :mod:`kstreams.exceptions` types. After
    ``stop()`` every method but ``stop()`` raises ``ConsumerStoppedError``
    (``ProducerClosedError`` for the producer). ``stop()`` is idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kstreams.exceptions import KafkaError
from kstreams.records import ConsumerRecord, Headers, RecordMetadata, TopicPartition

#: What a consumer port hands the core: raw bytes, deserialized later.
RawRecord = ConsumerRecord[bytes | None, bytes | None]
RecordBatch = dict[TopicPartition, list[RawRecord]]


class RebalanceCallbacks(Protocol):
    """What the core gives ``subscribe`` to hear about rebalances."""

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None: ...


class ConsumerPort(Protocol):
    """A group consumer, batch-first.

    Built by :meth:`Backend.create_consumer`, then ``subscribe`` once, then
    ``start``. Fetching many records bounded by a timeout is the primitive.
    """

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        """Subscribe to ``topics``, or to every topic matching the regex ``pattern``.

        Called once, before ``start``. A topic created after start is
        consumed within seconds: a named one as soon as it exists, a new
        match of a pattern within ``metadata_max_age_ms`` (3 s unless given,
        for a pattern subscription, on every backend).
        """
        ...

    async def start(self) -> None:
        """Connect and join the group.

        Raises ``KafkaConnectionError`` naming the bootstrap servers when no
        broker answered within 5 s (``request_timeout_ms`` if shorter),
        retrying every second meanwhile and logging each try at WARNING
        (:mod:`kstreams.backends.connecting`), instead of waiting forever.
        """
        ...

    async def stop(self) -> None:
        """Leave the group and close. Idempotent. Does not commit."""
        ...

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> RecordBatch:
        """Return up to ``max_records`` records from assigned, unpaused partitions.

        Waits at most ``timeout_ms`` for the first record, and returns an
        empty dict when none came. Rebalances are served while it waits.
        ``max_records=None`` means the ``max_poll_records`` the consumer was
        built with (or the client's default). Returned records advance the
        position. Raises ``NoOffsetForPartitionError`` when a partition has
        no committed offset and ``auto_offset_reset="none"``.
        """
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the given next-to-read offsets for the consumer's group.

        Raises ``IllegalOperationError`` without a group, and
        ``CommitFailedError`` when the group rebalanced under the commit.
        """
        ...

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, or ``None``."""
        ...

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``getmany`` will return from ``partition``.

        Raises ``IllegalStateError`` if ``partition`` is not assigned.
        """
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next record to fetch from ``partition``.

        Takes effect before the next ``getmany`` returns. Raises
        ``IllegalStateError`` if ``partition`` is not assigned.
        """
        ...

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Seek to the log start of ``partitions`` (all assigned if none)."""
        ...

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Seek to the log end of ``partitions`` (all assigned if none)."""
        ...

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still in each partition's log."""
        ...

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record produced to each partition will get."""
        ...

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions currently assigned to this consumer."""
        ...

    def highwater(self, partition: TopicPartition) -> int | None:
        """The high watermark last seen in a fetch of ``partition``, or ``None``."""
        ...

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records of ``partitions`` until ``resume``.

        Records already fetched and not yet returned are kept: the next
        record returned after ``resume`` is the one at the position.
        """
        ...

    def resume(self, *partitions: TopicPartition) -> None:
        """Undo ``pause`` for ``partitions``."""
        ...

    def paused(self) -> frozenset[TopicPartition]:
        """The partitions paused by ``pause``."""
        ...

    def connected(self) -> bool:
        """False while the client cannot reach any broker of the cluster (after it
        has tried), True otherwise.

        Cheap, for polling: it says what the client last saw, it sends nothing.
        Once the broker is back, it turns True within a second or two of the
        client reaching it again (consumption resumes by itself).
        """
        ...


class ProducerPort(Protocol):
    """A producer. ``start`` before use; ``stop`` flushes, then closes."""

    async def start(self) -> None:
        """Connect. Raises ``KafkaConnectionError`` when no broker answers in time
        (as ``ConsumerPort.start`` says)."""
        ...

    async def stop(self) -> None:
        """Deliver everything enqueued, then close. Idempotent."""
        ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> Awaitable[RecordMetadata]:
        """Enqueue one record; the returned awaitable resolves once the broker has it.

        Awaiting ``send`` itself only waits for room in the client's buffer,
        so many sends can be enqueued before any acknowledgement is awaited.
        Without ``partition``, a keyed record goes to the partition Kafka's
        murmur2 partitioner picks, the same on every backend.
        """
        ...

    async def flush(self) -> None:
        """Wait until every enqueued record is acknowledged or failed."""
        ...

    async def partitions_for(self, topic: str) -> frozenset[int]:
        """The partition numbers of ``topic``."""
        ...


#: What ``BatchSendPort.send_batch`` resolves to: per record, in order, where
#: the broker stored it or why it failed.
SendOutcomes = list[RecordMetadata | KafkaError]


class BatchSendPort(Protocol):
    """What a producer port may add to send many records with one completion.

    Optional: ``Producer.send_many`` uses it when the port has it, and calls
    ``send`` per record otherwise.
    """

    async def send_batch(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Awaitable[SendOutcomes]:
        """Enqueue ``(value, key, headers)`` records in order, as ``send`` would each.

        The awaitable resolves once every record is acknowledged or failed,
        with one outcome per record. A record that cannot be enqueued fails,
        with the same error, together with every record after it (they are
        not sent); the ones before it are still delivered. Raises only when
        nothing was enqueued (e.g. ``ProducerClosedError``).
        """
        ...


class SendAndWaitPort(Protocol):
    """What a producer port may add to send one record and wait for it in one call.

    Optional: ``Producer.send`` (``engine.send``) uses it when the port has it,
    and awaits ``send`` and then its delivery otherwise. Same record, ordering
    and errors as that pair; only cheaper for many concurrent senders.
    """

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> RecordMetadata:
        """``await (await send(...))``: where the broker stored the record."""
        ...


class Backend(Protocol):
    """Settings for one kind of client, and the factory of its adapters.

    A factory, because a stopped client cannot be restarted: each
    (re)start of a stream gets a new consumer.
    """

    @property
    def name(self) -> str:
        """The backend's name: "aiokafka", "confluent" or "memory"."""
        ...

    def create_consumer(self, *, group_id: str | None, options: Mapping[str, Any]) -> ConsumerPort:
        """A new consumer. ``options`` are AIOKafkaConsumer keyword arguments,
        already validated; a backend raises ``ConfigError`` naming any it
        cannot honour faithfully."""
        ...

    def create_producer(self, options: Mapping[str, Any]) -> ProducerPort:
        """A new producer from AIOKafkaProducer keyword arguments."""
        ...

    def check_consumer_options(self, *, group_id: str | None, options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` naming any option ``create_consumer`` would refuse.

        Called when a stream is declared, so that a setting the backend
        cannot honour fails at the decorator, not at start. Connects nothing.
        """
        ...


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """Who a consumer is in its group right now (Kafka's ConsumerGroupMetadata).

    A transaction's offsets are committed in this member's name: the group
    refuses them once ``generation_id`` is no longer the group's (KIP-447).
    """

    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None
    #: The client's own metadata object, for an adapter whose client needs it back
    #: (confluent-kafka's is opaque); the core never looks at it.
    client_metadata: Any = field(default=None, compare=False, repr=False)


class TransactionalConsumerPort(ConsumerPort, Protocol):
    """A consumer whose position can be committed by a producer's transaction.

    Isolation (the ``isolation_level`` option): with ``"read_committed"``,
    ``getmany`` returns only records of committed transactions (and records
    written outside any), and never reads past the *last stable offset*, the
    first offset of the oldest transaction still open on the partition;
    ``end_offsets``, ``seek_to_end`` and ``auto_offset_reset="latest"`` then
    mean the last stable offset too, while ``highwater`` stays the high
    watermark. Commit and abort markers take an offset each (the end offset
    counts them) and are never returned. The default, ``"read_uncommitted"``,
    returns aborted records too, up to the high watermark.
    """

    def group_metadata(self) -> GroupMetadata:
        """The member's group, generation and member id, as of the last rebalance it served.

        Raises ``IllegalOperationError`` without a group.
        """
        ...


class TransactionalProducerPort(ProducerPort, Protocol):
    """A producer built with a ``transactional_id``: everything it sends between
    ``begin_transaction`` and ``commit_transaction``, and the consumer offsets
    given to ``send_offsets_to_transaction``, become visible together or not at all.

    ``start`` registers the id with the cluster (Kafka's ``init_transactions``):
    a new epoch, which fences every older producer of the same id and aborts
    the transaction it left open. The id must therefore be stable across
    restarts of the same work. A transaction left open longer than
    ``transaction_timeout_ms`` is aborted by the cluster and its producer fenced.

    Errors, beyond ``ProducerPort``'s:

    - ``ProducerFencedError`` from every call (``send`` included) once a newer
      producer took the id or the transaction timed out; the only way on is
      ``stop`` and a new producer.
    - ``IllegalStateError``: ``begin_transaction`` while one is open; ``send``,
      ``send_offsets_to_transaction``, ``commit_transaction`` or
      ``abort_transaction`` with none open.
    - ``CommitFailedError`` from ``send_offsets_to_transaction`` when the
      member named by the group metadata is no longer in that generation of
      its group (it was rebalanced away); the transaction can then only be
      aborted, and ``commit_transaction`` raises ``CommitFailedError`` too.
    - ``IllegalOperationError`` from the transactional methods of a producer
      built without a ``transactional_id``.
    """

    async def begin_transaction(self) -> None:
        """Open a transaction: sends from now on belong to it."""
        ...

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group: GroupMetadata
    ) -> None:
        """Commit ``offsets`` (next-to-read, as ``ConsumerPort.commit``) for ``group`` with the
        open transaction, fenced by ``group``'s generation."""
        ...

    async def commit_transaction(self) -> None:
        """Deliver what was sent, then make the transaction's records and offsets visible."""
        ...

    async def abort_transaction(self) -> None:
        """Drop the open transaction: its records stay in the log, hidden from read_committed
        consumers, and its offsets are never committed."""
        ...
