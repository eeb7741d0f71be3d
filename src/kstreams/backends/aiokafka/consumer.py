"""The consumer port on aiokafka's AIOKafkaConsumer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiokafka
import aiokafka.errors as aioerrors
from aiokafka.abc import ConsumerRebalanceListener

from kstreams import exceptions as kerrors
from kstreams.backends.aiokafka.closing import stop_client
from kstreams.backends.aiokafka.errors import CLIENT_ERRORS, start_client, translate
from kstreams.backends.aiokafka.fetched import build_kstreams_records
from kstreams.backends.aiokafka.transactional import AiokafkaGroupMetadata
from kstreams.options import (
    CONSUMER_OPTIONS,
    CORE_CONSUMER_OPTIONS,
    check_options,
    heartbeat_interval_ms,
    metadata_max_age_ms,
)
from kstreams.ports import RawRecord, RebalanceCallbacks, RecordBatch
from kstreams.records import ConsumerRecord, TopicPartition

_AioTopicPartition = aiokafka.TopicPartition


def _to_client_tp(tp: TopicPartition) -> Any:
    return _AioTopicPartition(tp.topic, tp.partition)


def _to_client_tps(tps: Iterable[TopicPartition]) -> list[Any]:
    return [_AioTopicPartition(tp.topic, tp.partition) for tp in tps]


def _from_client_tps(tps: Iterable[Any]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in tps)


# aiokafka's record has the eleven fields of ConsumerRecord, by the same names.
# Per record: object.__new__ and the dataclass's own __init__ called directly
# (calling the class goes through type.__call__), with plain attribute reads,
# which Python specializes: 0.42-0.48 us a record against 0.84 us for one
# attrgetter of all eleven fields and a call of the class (timeit, 500-record
# batches).
_new_record = object.__new__
_init_record = ConsumerRecord.__init__


def _convert_records(records: list[Any]) -> list[RawRecord]:
    new, init, cls = _new_record, _init_record, ConsumerRecord
    converted: list[RawRecord] = []
    append = converted.append
    for r in records:
        record = new(cls)
        init(
            record,
            r.topic,
            r.partition,
            r.offset,
            r.timestamp,
            r.timestamp_type,
            r.key,
            r.value,
            r.checksum,
            r.serialized_key_size,
            r.serialized_value_size,
            r.headers,
        )
        append(record)
    return converted


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, callbacks: RebalanceCallbacks) -> None:
        self._callbacks = callbacks
        #: The client partitions being revoked while the revoke callback runs.
        self.revoking: frozenset[Any] = frozenset()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # aiokafka reports an empty revocation before the first assignment.
        if revoked:
            self.revoking = frozenset(revoked)
            try:
                await self._callbacks.on_partitions_revoked(_from_client_tps(revoked))
            finally:
                self.revoking = frozenset()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self._callbacks.on_partitions_assigned(_from_client_tps(assigned))


class AiokafkaConsumer(AiokafkaGroupMetadata):
    def __init__(self, *, group_id: str | None = None, **aiokafka_consumer_kwargs: Any) -> None:
        check_options("AiokafkaConsumer", aiokafka_consumer_kwargs, CONSUMER_OPTIONS)
        options = {
            name: value
            for name, value in aiokafka_consumer_kwargs.items()
            if name not in CORE_CONSUMER_OPTIONS
        }
        options["enable_auto_commit"] = False
        options["heartbeat_interval_ms"] = heartbeat_interval_ms(aiokafka_consumer_kwargs)
        self._group_id = group_id
        self._options = options
        self._topics: tuple[str, ...] = ()
        self._pattern: str | None = None
        self._listener: RebalanceCallbacks | None = None
        self._client_listener: _RebalanceListener | None = None
        self._client: Any = None
        self._stopped = False
        self._tps: dict[Any, TopicPartition] = {}
        #: Whether the client's getmany returns kstreams records already.
        self._builds_records = False

    def _running(self) -> Any:
        client = self._client
        if client is None:
            raise self._not_running()
        return client

    def _not_running(self) -> kerrors.KafkaError:
        if self._stopped:
            return kerrors.ConsumerStoppedError("the consumer was stopped")
        return kerrors.IllegalStateError("the consumer is not started")

    def _assigned(self, client: Any, partitions: Iterable[TopicPartition]) -> list[Any]:
        assigned = client.assignment()
        converted = _to_client_tps(partitions)
        missing = [tp for tp in converted if tp not in assigned]
        if missing:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in missing)
            raise kerrors.IllegalStateError(f"partitions not assigned: {names}")
        return converted

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: RebalanceCallbacks | None = None,
    ) -> None:
        if self._stopped:
            raise kerrors.ConsumerStoppedError("the consumer was stopped")
        if bool(topics) == (pattern is not None):
            raise kerrors.ConfigError("subscribe needs either topics or a pattern, not both")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise kerrors.ConfigError(f"invalid topic pattern {pattern!r}: {exc}") from exc
        self._topics = tuple(topics)
        self._pattern = pattern
        self._listener = listener
        if self._client is not None:
            self._apply_subscription(self._client)

    def _apply_subscription(self, client: Any) -> None:
        listener = _RebalanceListener(self._listener) if self._listener is not None else None
        self._client_listener = listener
        if self._pattern is not None:
            client.subscribe(pattern=self._pattern, listener=listener)
        elif self._topics:
            client.subscribe(topics=list(self._topics), listener=listener)

    async def start(self) -> None:
        if self._stopped:
            raise kerrors.ConsumerStoppedError("the consumer was stopped")
        if self._client is not None:
            raise kerrors.IllegalStateError("the consumer is already started")
        options = dict(self._options)
        options["metadata_max_age_ms"] = metadata_max_age_ms(
            options, pattern=self._pattern is not None
        )

        def build() -> Any:
            # Set before aiokafka's start, which runs the first assignment's
            # callbacks: those may call back into this adapter.
            client = self._client = aiokafka.AIOKafkaConsumer(group_id=self._group_id, **options)
            return client

        try:
            await start_client("aiokafka consumer", build, options, self._apply_subscription)
        except BaseException:
            self._client = None
            self._stopped = True
            raise
        self._builds_records = build_kstreams_records(self._client)
        if self._group_id is None and self._listener is not None:
            # Without a group aiokafka assigns every partition itself and never
            # calls the listener; report that first assignment as a group would.
            await self._listener.on_partitions_assigned(self.assignment())

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._stopped = True
        if client is None:
            return
        try:
            await stop_client(client)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> RecordBatch:
        client = self._client
        if client is None:
            raise self._not_running()
        try:
            fetched = await client.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        batch: RecordBatch = {}
        tps = self._tps
        builds_records = self._builds_records
        for client_tp, records in fetched.items():
            tp = tps.get(client_tp)
            if tp is None:
                tp = tps[client_tp] = TopicPartition(client_tp.topic, client_tp.partition)
            batch[tp] = records if builds_records else _convert_records(records)
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        client = self._running()
        if self._group_id is None:
            raise kerrors.IllegalOperationError("commit needs a consumer with a group_id")
        if not offsets:
            return
        to_commit = {_to_client_tp(tp): offset for tp, offset in offsets.items()}
        try:
            await client.commit(to_commit)
        except aioerrors.IllegalStateError as exc:
            listener = self._client_listener
            if listener is None or not listener.revoking or not set(to_commit) <= listener.revoking:
                raise translate(exc) from exc
            await self._commit_revoking(client, to_commit)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def _commit_revoking(self, client: Any, offsets: dict[Any, int]) -> None:
        """Commit partitions being revoked after aiokafka forgot them.

        When a pattern subscription picks up a new topic, aiokafka replaces its
        subscription before calling the revoke callback, so its ``commit``
        refuses the partitions being revoked ("No partitions assigned"). The
        group generation is still the one they were assigned in: commit them
        through the group coordinator, as aiokafka's own commit would.
        """
        from aiokafka.structs import OffsetAndMetadata

        try:
            await client._coordinator.commit_offsets(
                None, {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
            )
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def committed(self, partition: TopicPartition) -> int | None:
        client = self._running()
        if self._group_id is None:
            raise kerrors.IllegalOperationError("committed needs a consumer with a group_id")
        try:
            offset = await client.committed(_to_client_tp(partition))
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return None if offset is None else int(offset)

    async def position(self, partition: TopicPartition) -> int:
        client = self._running()
        try:
            return int(await client.position(_to_client_tp(partition)))
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        client = self._running()
        if offset < 0:
            raise kerrors.OffsetOutOfRangeError(f"cannot seek {partition} to offset {offset}")
        (client_tp,) = self._assigned(client, (partition,))
        try:
            client.seek(client_tp, offset)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def _seek_to(self, method: str, partitions: tuple[TopicPartition, ...]) -> None:
        client = self._running()
        targets = self._assigned(client, partitions) if partitions else list(client.assignment())
        if not targets:
            return
        try:
            # aiokafka returns False when the reset is still pending after
            # request_timeout_ms; the fetcher still applies it before fetching.
            await getattr(client, method)(*targets)
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        await self._seek_to("seek_to_beginning", partitions)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        await self._seek_to("seek_to_end", partitions)

    async def _offsets(
        self, method: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        client = self._running()
        if not partitions:
            return {}
        try:
            offsets = await getattr(client, method)(_to_client_tps(partitions))
        except CLIENT_ERRORS as exc:
            raise translate(exc) from exc
        return {
            TopicPartition(tp.topic, tp.partition): int(offset) for tp, offset in offsets.items()
        }

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await self._offsets("beginning_offsets", partitions)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._offsets("end_offsets", partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return frozenset()
        return _from_client_tps(client.assignment())

    def highwater(self, partition: TopicPartition) -> int | None:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return None
        client_tp = _to_client_tp(partition)
        # aiokafka asserts the partition is assigned; unassigned means never seen.
        if client_tp not in client.assignment():
            return None
        highwater = client.highwater(client_tp)
        return None if highwater is None else int(highwater)

    def pause(self, *partitions: TopicPartition) -> None:
        client = self._running()
        client.pause(*self._assigned(client, partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        client = self._running()
        client.resume(*self._assigned(client, partitions))

    def connected(self) -> bool:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return True
        # aiokafka has no public word for it: its client keeps one connection
        # per node in use (the coordinator's at least, while in a group) and
        # drops it when it breaks. None open means no broker is reachable.
        connections = getattr(getattr(client, "_client", None), "_conns", None)
        if connections is None:
            return True
        return any(connection.connected() for connection in list(connections.values()))

    def paused(self) -> frozenset[TopicPartition]:
        client = self._client
        if client is None:
            if self._stopped:
                raise kerrors.ConsumerStoppedError("the consumer was stopped")
            return frozenset()
        return _from_client_tps(client.paused())
