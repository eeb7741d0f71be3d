"""Transactions on librdkafka: ``TransactionalProducerPort`` and ``group_metadata``.

Mixed into :class:`~kstreams.backends.confluent.producer.ConfluentProducer`
and :class:`~kstreams.backends.confluent.consumer.ConfluentConsumer`.
librdkafka fences a zombie member itself (KIP-447):
``send_offsets_to_transaction`` sends the consumer's group metadata, whose
generation the group checks. The producer's transaction calls block, so they
run on its one-thread executor, each bounded by librdkafka's own timeout
(``request_timeout_ms``) and on the loop by a little more; the consumer's
metadata is read by its worker thread when an assignment arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition

from kstreams.backends.confluent.errors import translate_exception
from kstreams.exceptions import (
    IllegalOperationError,
    IllegalStateError,
    KafkaTimeoutError,
)
from kstreams.ports import GroupMetadata
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from kstreams.backends.confluent.config import ProducerConfig

T = TypeVar("T")

#: Slack on the loop beyond librdkafka's own timeout of a transaction call.
_LOOP_SLACK_S = 5.0
_MAGIC = b"CGMDv2:"


class ConfluentTransactions:
    """``TransactionalProducerPort``'s methods, run on the producer's executor."""

    _config: ProducerConfig
    _loop: asyncio.AbstractEventLoop | None
    _executor: concurrent.futures.ThreadPoolExecutor | None

    if TYPE_CHECKING:

        def _running(self) -> Producer: ...

    async def _txn_call(self, what: str, call: Callable[[Producer, float], T]) -> T:
        producer = self._running()
        if not self._config.transactional:
            raise IllegalOperationError(
                "transactions need a producer built with a transactional_id"
            )
        timeout_s = self._config.request_timeout_s

        def job() -> T:
            try:
                return call(producer, timeout_s)
            except KafkaException as exc:
                raise translate_exception(exc) from exc

        loop = cast(asyncio.AbstractEventLoop, self._loop)  # set by a start
        running = loop.run_in_executor(self._executor, job)
        done, _ = await asyncio.wait({running}, timeout=timeout_s + _LOOP_SLACK_S)
        if not done:
            raise KafkaTimeoutError(f"{what} did not return within {timeout_s:g} s")
        return running.result()

    async def begin_transaction(self) -> None:
        await self._txn_call("begin_transaction", lambda p, _t: p.begin_transaction())

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group: GroupMetadata
    ) -> None:
        if group.client_metadata is None:
            raise IllegalOperationError(
                "send_offsets_to_transaction needs the group metadata of a confluent consumer"
            )
        positions = [
            RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()
        ]
        await self._txn_call(
            "send_offsets_to_transaction",
            lambda p, t: p.send_offsets_to_transaction(positions, group.client_metadata, t),
        )

    async def commit_transaction(self) -> None:
        await self._txn_call("commit_transaction", lambda p, t: p.commit_transaction(t))

    async def abort_transaction(self) -> None:
        await self._txn_call("abort_transaction", lambda p, t: p.abort_transaction(t))


def _parse(raw: bytes) -> tuple[int, str]:
    """The generation and member id in librdkafka's serialized group metadata, where known."""
    if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 4:
        return -1, ""
    rest = raw[len(_MAGIC) :]
    (generation,) = struct.unpack(">i", rest[:4])
    fields = rest[4:].split(b"\x00")
    member = fields[1].decode(errors="replace") if len(fields) > 1 else ""
    return generation, member


class ConfluentGroupMetadata:
    """``TransactionalConsumerPort.group_metadata``: what the worker read at the last
    assignment (librdkafka's object travels in ``client_metadata``)."""

    _group_id: str | None
    #: Written by the worker thread on each assignment (a whole-value rebind).
    _rd_group_metadata: Any = None

    def _note_group_metadata(self, client: Consumer) -> None:
        """Worker thread: remember who this member is in the generation just assigned."""
        self._rd_group_metadata = client.consumer_group_metadata()

    def group_metadata(self) -> GroupMetadata:
        if self._group_id is None:
            raise IllegalOperationError("group_metadata needs a consumer with a group_id")
        raw = self._rd_group_metadata
        if raw is None:
            raise IllegalStateError("the consumer has not been assigned partitions yet")
        generation, member = _parse(raw) if isinstance(raw, bytes) else (-1, "")
        return GroupMetadata(self._group_id, generation, member, client_metadata=raw)
