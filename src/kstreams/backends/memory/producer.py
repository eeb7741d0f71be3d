"""The memory producer: appends to the cluster's logs, optionally inside a transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final

from kstreams.backends.memory.cluster import MemoryCluster
from kstreams.backends.memory.log import BATCH_HEADER_SIZE, as_bytes, record_size
from kstreams.backends.memory.transactions import Session
from kstreams.exceptions import (
    ConfigError,
    IllegalOperationError,
    IllegalStateError,
    ProducerClosedError,
    RecordTooLargeError,
)
from kstreams.options import PRODUCER_OPTIONS, check_options
from kstreams.ports import GroupMetadata
from kstreams.records import CREATE_TIME, Headers, RecordMetadata, TopicPartition

__all__ = ["MemoryProducer"]

DEFAULT_MAX_REQUEST_SIZE: Final = 1_048_576
DEFAULT_TRANSACTION_TIMEOUT_MS: Final = 60_000
# A real producer's send() only yields when its buffer is full; yielding on
# every call would cost more than the append itself (a loop turn is ~2.5 us
# on the project's machines), so send() yields once per this many calls.
_SEND_CHECKPOINT_EVERY: Final = 64

_NEW, _STARTED, _STOPPED = "new", "started", "stopped"


class _Delivered:
    """An acknowledgement that is already in: awaiting it returns the metadata at once.

    The metadata is built on first await: most sends are never awaited one
    by one, and building it costs as much as the append.
    """

    __slots__ = ("_metadata", "_offset", "_partition", "_timestamp", "_topic")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._timestamp = timestamp
        self._metadata: RecordMetadata | None = None

    def result(self) -> RecordMetadata:
        if self._metadata is None:
            self._metadata = RecordMetadata(
                self._topic, self._partition, self._offset, self._timestamp, CREATE_TIME
            )
        return self._metadata

    def done(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.result()
        yield  # a generator that never suspends: the record is already in the log

    def __repr__(self) -> str:
        return f"<delivered {self._topic}[{self._partition}]@{self._offset}>"


class MemoryProducer:
    def __init__(self, cluster: MemoryCluster, **options: Any) -> None:
        check_options("memory producer", options, PRODUCER_OPTIONS)
        self._cluster = cluster
        self._key_serializer: Callable[[Any], bytes | None] | None = options.get("key_serializer")
        self._value_serializer: Callable[[Any], bytes | None] | None = options.get(
            "value_serializer"
        )
        self._partitioner: Callable[..., int] | None = options.get("partitioner")
        self._max_request_size: int = options.get("max_request_size") or DEFAULT_MAX_REQUEST_SIZE
        # Below this many key and value bytes no record can reach max_request_size.
        self._size_check_from = self._max_request_size - 2 * BATCH_HEADER_SIZE - 64
        self._transactional_id: str | None = options.get("transactional_id")
        if self._transactional_id is not None and (
            not isinstance(self._transactional_id, str) or not self._transactional_id
        ):
            raise ConfigError(
                f"transactional_id must be a non-empty str, got {self._transactional_id!r}"
            )
        timeout_ms = options.get("transaction_timeout_ms", DEFAULT_TRANSACTION_TIMEOUT_MS)
        if type(timeout_ms) is not int or timeout_ms < 1:
            raise ConfigError(
                f"transaction_timeout_ms must be a positive int of ms, got {timeout_ms!r}"
            )
        self._transaction_timeout_s = timeout_ms / 1000
        self._session: Session | None = None
        self._state = _NEW
        self._sends = 0

    def __repr__(self) -> str:
        return f"MemoryProducer({self._state})"

    async def start(self) -> None:
        self._check_not_closed()
        await asyncio.sleep(0)
        self._check_not_closed()
        if self._transactional_id is not None and self._session is None:
            self._session = self._cluster._transactions.init(
                self._transactional_id, self._transaction_timeout_s
            )
        self._state = _STARTED

    async def stop(self) -> None:
        if self._state == _STOPPED:
            return
        await asyncio.sleep(0)
        # An open transaction is left to the cluster, as a closed Kafka
        # producer leaves it: aborted at its timeout or when the id restarts.
        self._state = _STOPPED

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> _Delivered:
        if self._state != _STARTED:
            self._check_not_closed()
            raise IllegalStateError("the producer is not started")
        self._sends += 1
        if not self._sends % _SEND_CHECKPOINT_EVERY:
            await asyncio.sleep(0)
            self._check_not_closed()
        txn = None if self._session is None else self._session.current()
        if self._key_serializer is not None:
            key = self._key_serializer(key)
        if self._value_serializer is not None:
            value = self._value_serializer(value)
        if type(value) is not bytes:
            value = as_bytes("value", value)
        if type(key) is not bytes:
            key = as_bytes("key", key)
        if headers or (
            (0 if key is None else len(key)) + (0 if value is None else len(value))
            > self._size_check_from
        ):
            size = record_size(key, value, headers)
            if size > self._max_request_size:
                raise RecordTooLargeError(
                    f"the record is {size} bytes serialized, more than "
                    f"max_request_size={self._max_request_size}"
                )
        cluster = self._cluster
        partitions = cluster._topics.get(topic) or cluster._partitions(topic)
        if partition is None:
            if self._partitioner is not None:
                numbers = list(range(len(partitions)))
                partition = self._partitioner(key, numbers, numbers)
            else:
                partition = cluster._default_partition(key, len(partitions))
        if txn is None:
            offset, timestamp = cluster._append(
                topic, partitions, partition, key, value, timestamp_ms, headers
            )
        else:
            offset, timestamp = cluster._append(
                topic, partitions, partition, key, value, timestamp_ms, headers, txn.mark
            )
            txn.partitions.add(partitions[partition])
        return _Delivered(topic, partition, offset, timestamp)

    async def flush(self) -> None:
        self._check_not_closed()
        await asyncio.sleep(0)

    async def partitions_for(self, topic: str) -> frozenset[int]:
        self._check_not_closed()
        await asyncio.sleep(0)
        self._check_not_closed()
        return frozenset(range(len(self._cluster._partitions(topic))))

    # -- transactions (TransactionalProducerPort)

    async def begin_transaction(self) -> None:
        self._transactional().begin()

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group: GroupMetadata
    ) -> None:
        session = self._transactional()
        session.current()
        await asyncio.sleep(0)
        self._transactional().add_offsets(offsets, group)

    async def commit_transaction(self) -> None:
        session = self._transactional()
        session.current()
        await asyncio.sleep(0)
        self._transactional().commit()

    async def abort_transaction(self) -> None:
        session = self._transactional()
        session.current()
        await asyncio.sleep(0)
        self._transactional().abort()

    def _transactional(self) -> Session:
        if self._transactional_id is None:
            raise IllegalOperationError(
                "transactions need a producer built with a transactional_id"
            )
        if self._state != _STARTED:
            self._check_not_closed()
            raise IllegalStateError("the producer is not started")
        assert self._session is not None
        return self._session

    def _check_not_closed(self) -> None:
        if self._state == _STOPPED:
            raise ProducerClosedError("the producer is stopped")
