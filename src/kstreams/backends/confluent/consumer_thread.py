"""The worker-thread side of a confluent consumer: every call to librdkafka's Consumer.

Runs only on the consumer's :class:`~.worker.Worker` thread. Rebalance
callbacks fire here inside ``consume()``: the listener is run back on the
event loop and waited for, while the worker keeps serving the consumer calls
the listener makes.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Message
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from kstreams.backends.confluent.config import ConsumerConfig, subscription_pattern
from kstreams.backends.confluent.errors import (
    error_of,
    librdkafka_log,
    log,
    log_client_error,
    translate,
    translate_exception,
)
from kstreams.backends.confluent.messages import MessageBatch, first_metadata, group_messages, rd
from kstreams.backends.confluent.worker import Worker
from kstreams.exceptions import (
    ConfigError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
)
from kstreams.ports import RebalanceCallbacks
from kstreams.records import TopicPartition

State = Literal["new", "started", "closing", "stopped"]

#: How often the worker asks for a subscribed topic that does not exist (yet):
#: librdkafka itself asks again only at its next metadata refresh, 5 min later.
MISSING_TOPIC_CHECK_S = 1.0
#: While no broker answers, how often the worker asks one whether it is back.
RECONNECT_PROBE_S = 1.0
#: How long one ``consume()`` call may block. Calls queued for the consumer
#: (commit, seek...) wait at most this long while a ``getmany`` waits.
FETCH_SLICE_S = 0.1


class ConsumerThreadSide:
    """The state and the calls of the worker thread; :class:`ConfluentConsumer` builds it."""

    _config: ConsumerConfig
    _group_id: str | None
    _topics: tuple[str, ...]
    _pattern: str | None
    _listener: RebalanceCallbacks | None
    _state: State
    _stopping: threading.Event
    _loop: asyncio.AbstractEventLoop | None
    _worker: Worker | None
    # Read on the loop, written on the worker (whole-value rebinds).
    _assignment: frozenset[TopicPartition]
    _paused: frozenset[TopicPartition]
    _highwater: dict[TopicPartition, int]
    # Worker-only.
    _client: Consumer | None
    _positions: dict[TopicPartition, int]
    _undelivered: list[Message[Any, Any]]
    _partition_cache: dict[tuple[Any, Any], TopicPartition]
    _pending_error: KafkaError | None
    _in_close: bool
    _missing_topics: frozenset[str]
    _next_topic_check: float
    # Written by librdkafka's and the worker's threads, read on the loop.
    _connected: bool
    _next_probe: float

    if TYPE_CHECKING:  # from ConfluentGroupMetadata (transactional.py)

        def _note_group_metadata(self, client: Consumer) -> None: ...

    async def _call_listener(self, method: str, partitions: frozenset[TopicPartition]) -> None:
        try:
            await getattr(self._listener, method)(partitions)
        except Exception:
            log.exception("rebalance listener %s(%s) failed", method, sorted(partitions))

    def _consumer(self) -> Consumer:
        if self._client is None:
            raise ConsumerStoppedError("the consumer is not open")
        return self._client

    def _open(self) -> None:
        properties = self._config.client_properties(
            pattern=self._pattern is not None, loop=self._loop
        )
        properties.setdefault("logger", librdkafka_log)
        properties.setdefault("error_cb", self._on_error)
        try:
            client = Consumer(properties)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"confluent-kafka rejected the consumer settings: {exc}") from exc
        self._client = client
        metadata = first_metadata(
            client, "confluent consumer", properties, self._config.request_timeout_s
        )
        if self._group_id is not None:
            subscription = (
                [subscription_pattern(self._pattern)]
                if self._pattern is not None
                else list(self._topics)
            )
            client.subscribe(subscription, on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._missing_topics = frozenset(self._topics) - frozenset(metadata.topics)
            return
        # Without a group, every partition of the subscribed topics is
        # assigned, as aiokafka does.
        topics = sorted(metadata.topics)
        if self._pattern is not None:
            matcher = re.compile(self._pattern)
            hidden = ("__consumer_offsets", "__transaction_state")
            topics = [
                topic
                for topic in topics
                if matcher.match(topic)
                and not (self._config.exclude_internal_topics and topic in hidden)
            ]
        else:
            missing = set(self._topics) - set(topics)
            if missing:
                log.warning("topics %s do not exist; nothing assigned from them", sorted(missing))
            topics = [topic for topic in self._topics if topic in metadata.topics]
        assignment = frozenset(
            TopicPartition(topic, partition)
            for topic in topics
            for partition in metadata.topics[topic].partitions
        )
        starts = self._start_offsets(assignment)
        client.assign(
            [
                rd(partition, starts.get(partition, OFFSET_INVALID))
                for partition in sorted(assignment)
            ]
        )
        self._positions.update(starts)
        self._assignment = assignment

    def _close_client(self) -> None:
        self._in_close = True
        client = self._client
        if client is None:
            return
        try:
            client.close()  # serves the final revoke callback, which needs the client
        finally:
            self._client = None

    def _on_error(self, error: RdKafkaError) -> None:
        if error.fatal():
            self._pending_error = translate(error)
            log.error("confluent consumer fatal error: %s", error)
        else:
            if error.code() == RdKafkaError._ALL_BROKERS_DOWN:
                # librdkafka says so once per outage and never says it is over:
                # _probe_brokers finds out.
                self._connected = False
            log_client_error(error)

    def _probe_brokers(self, client: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + RECONNECT_PROBE_S
        try:
            client.list_topics(timeout=RECONNECT_PROBE_S / 2)
        except KafkaException:
            return
        self._connected = True

    def _on_assign(self, _consumer: Consumer, partitions: list[RdTopicPartition]) -> None:
        assigned = frozenset(TopicPartition(p.topic, p.partition) for p in partitions)
        self._positions.clear()
        self._undelivered = []
        starts = self._start_offsets(assigned)
        client = self._consumer()
        client.assign(
            [rd(partition, starts.get(partition, OFFSET_INVALID)) for partition in sorted(assigned)]
        )
        if assigned:
            # librdkafka keeps a partition's pause across unassign and assign; a new
            # assignment starts unpaused, as on aiokafka.
            client.resume([rd(partition) for partition in sorted(assigned)])
        self._positions.update(starts)
        self._assignment = assigned
        self._paused = frozenset()
        self._note_group_metadata(client)
        self._run_listener("on_partitions_assigned", assigned)

    def _on_revoke(self, _consumer: Consumer, _partitions: list[RdTopicPartition]) -> None:
        # aiokafka does not call the listener when the consumer stops.
        if not self._in_close:
            self._run_listener("on_partitions_revoked", self._assignment)
        self._consumer().unassign()
        self._assignment = frozenset()
        self._paused = frozenset()
        self._positions.clear()
        self._highwater.clear()
        self._undelivered = []

    def _run_listener(self, method: str, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None or self._loop is None or self._worker is None:
            return
        coroutine = self._call_listener(method, partitions)
        try:
            done = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:
            coroutine.close()
            log.warning("event loop closed: rebalance listener %s not called", method)
            return
        # Bounded well under max.poll.interval.ms, past which the broker
        # would evict this member anyway.
        timeout_s = self._config.max_poll_interval_s / 2
        if not self._worker.serve_until(done, timeout_s):
            done.cancel()
            log.error(
                "rebalance listener %s did not return within %.1f s; the rebalance goes on",
                method,
                timeout_s,
            )

    def _fetch(self, timeout_s: float, limit: int) -> MessageBatch:
        # Hands librdkafka's messages over as they are: the records are built
        # on the event loop (messages.to_records), so that this thread holds
        # the GIL only briefly while the handlers run.
        client = self._consumer()
        worker = cast(Worker, self._worker)
        deadline = time.monotonic() + timeout_s
        records = self._take_undelivered(limit)
        while not records:
            worker.serve_control()
            if not self._connected:
                self._probe_brokers(client)
            if self._missing_topics:
                self._look_for_missing_topics(client)
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self._stopping.is_set():
                break
            # consume() waits for a full batch or the timeout: take what is
            # there, else wait for one record, then whatever came with it.
            messages = client.consume(num_messages=limit, timeout=0)
            if not messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                messages = client.consume(num_messages=1, timeout=min(remaining, FETCH_SLICE_S))
                if messages and limit > 1:
                    messages += client.consume(num_messages=limit - 1, timeout=0)
            records = self._accept(messages)
            if not records and time.monotonic() >= deadline:
                break
        return records

    def _look_for_missing_topics(self, client: Consumer) -> None:
        # A metadata reply naming the topic makes librdkafka rejoin the group
        # with it; the request also lets the broker auto-create it, as
        # aiokafka's does.
        now = time.monotonic()
        if now < self._next_topic_check:
            return
        self._next_topic_check = now + MISSING_TOPIC_CHECK_S
        found = set()
        for topic in sorted(self._missing_topics):
            try:
                metadata = client.list_topics(topic, timeout=MISSING_TOPIC_CHECK_S)
            except KafkaException:
                return
            described = metadata.topics.get(topic)
            if described is not None and described.error is None and described.partitions:
                found.add(topic)
        self._missing_topics -= found

    def _take_undelivered(self, limit: int) -> MessageBatch:
        if not self._undelivered:
            return {}
        messages, self._undelivered = self._undelivered[:limit], self._undelivered[limit:]
        batch, _ = group_messages(messages, self._partition_cache)
        return self._admit(batch)

    def _accept(self, messages: list[Message[Any, Any]]) -> MessageBatch:
        topic = self._topics[0] if self._pattern is None and len(self._topics) == 1 else None
        batch, problem = group_messages(messages, self._partition_cache, topic)
        error = self._message_error(problem) if problem is not None else None
        batch = self._admit(batch)
        client = self._consumer()
        for partition, grouped in batch.items():
            self._positions[partition] = cast(int, grouped[-1].offset()) + 1
            watermarks: tuple[int, int] | None = client.get_watermark_offsets(
                rd(partition), cached=True
            )
            if watermarks is not None and watermarks[1] >= 0:
                self._highwater[partition] = watermarks[1]
        if error is not None:
            if not batch:
                raise error
            self._pending_error = error
        return batch

    def _admit(self, batch: MessageBatch) -> MessageBatch:
        """Drop messages of partitions no longer assigned, or paused since they were fetched."""
        assignment, paused = self._assignment, self._paused
        for partition in list(batch):
            if partition not in assignment:
                del batch[partition]
            elif partition in paused:
                self._seek_now(partition, cast(int, batch.pop(partition)[0].offset()))
        return batch

    def _message_error(self, error: RdKafkaError) -> KafkaError | None:
        code = error.code()
        if code == RdKafkaError._PARTITION_EOF:
            return None
        if code in (RdKafkaError.UNKNOWN_TOPIC_OR_PART, RdKafkaError._UNKNOWN_TOPIC):
            # aiokafka waits for a subscribed topic to appear, and so does this
            # adapter, asking for it every MISSING_TOPIC_CHECK_S.
            log.warning("subscribed topic not available: %s", error.str())
            assigned = {partition.topic for partition in self._assignment}
            self._missing_topics = frozenset(self._topics) - assigned
            return None
        if code == RdKafkaError._AUTO_OFFSET_RESET or error.fatal():
            return translate(error)
        log.warning("confluent consumer error: %s", error)
        return None

    def _commit_now(self, offsets: dict[TopicPartition, int]) -> None:
        result = self._consumer().commit(
            offsets=[rd(partition, offset) for partition, offset in offsets.items()],
            asynchronous=False,
        )
        for partition in result or ():
            if partition.error is not None:
                raise translate(partition.error)

    def _committed_now(self, partition: TopicPartition) -> int | None:
        (result,) = self._consumer().committed(
            [rd(partition)], timeout=self._config.request_timeout_s
        )
        if result.error is not None:
            raise translate(result.error)
        return result.offset if result.offset >= 0 else None

    def _start_offsets(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        # Every partition starts at an offset resolved here, never at one
        # librdkafka looks up itself: a seek made while its auto.offset.reset
        # ListOffsets is in flight is undone when the (outdated) reply comes
        # back, as librdkafka then re-arms the lookup, which half a second
        # later moves the partition to the log's end (or start) of that moment:
        # a pinned position() is lost and the records in between are skipped.
        starts: dict[TopicPartition, int] = {}
        if not partitions:
            return starts
        ordered = sorted(partitions)
        try:
            if self._group_id is not None:
                committed = self._consumer().committed(
                    [rd(partition) for partition in ordered],
                    timeout=self._config.request_timeout_s,
                )
                for result in committed:
                    if result.error is None and result.offset >= 0:
                        starts[TopicPartition(result.topic, result.partition)] = result.offset
            reset = self._config.auto_offset_reset
            if reset != "none":
                missing = [partition for partition in ordered if partition not in starts]
                starts.update(self._watermarks(missing, 0 if reset == "earliest" else 1))
        except (KafkaException, KafkaError) as exc:
            # librdkafka resolves the partitions left out itself.
            log.warning("start offsets of %s not resolved: %s", ordered, exc)
        return starts

    def _position_now(self, partition: TopicPartition) -> int:
        if partition not in self._assignment:
            raise IllegalStateError(f"{partition} is not assigned to this consumer")
        if partition in self._positions:
            return self._positions[partition]
        client = self._consumer()
        (known,) = client.position([rd(partition)])
        if known.offset >= 0:
            return known.offset
        # Nothing fetched yet: resolve the start as the fetcher would, and pin
        # it there, as aiokafka does, so that a record produced after this
        # answer is not skipped by a later "latest" reset.
        resolved = self._committed_now(partition) if self._group_id is not None else None
        if resolved is None:
            reset = self._config.auto_offset_reset
            if reset == "none":
                raise NoOffsetForPartitionError(f"{partition} has no committed offset")
            resolved = self._watermarks((partition,), 0 if reset == "earliest" else 1)[partition]
        self._seek_now(partition, resolved)
        return resolved

    def _seek_now(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self._assignment:
            raise IllegalStateError(f"{partition} is not assigned to this consumer")
        self._positions[partition] = offset
        topic, number = partition.topic, partition.partition
        self._undelivered = [
            message
            for message in self._undelivered
            if message.partition() != number or message.topic() != topic
        ]
        try:
            self._consumer().seek(rd(partition, offset))
        except KafkaException as exc:
            error = error_of(exc)
            if error is None or error.code() != RdKafkaError._STATE:
                raise translate_exception(exc) from exc
            # librdkafka refuses to seek a partition it has not started
            # fetching yet (just assigned): assign again, from the offset.
            self._reassign()

    def _reassign(self) -> None:
        client = self._consumer()
        client.assign(
            [
                rd(partition, self._positions.get(partition, OFFSET_INVALID))
                for partition in sorted(self._assignment)
            ]
        )
        paused = self._paused & self._assignment
        if paused:
            client.pause([rd(partition) for partition in sorted(paused)])

    def _seek_to_watermark(self, partitions: Sequence[TopicPartition], which: int) -> None:
        for partition, offset in self._watermarks(partitions, which).items():
            self._seek_now(partition, offset)

    def _watermarks(
        self, partitions: Sequence[TopicPartition], which: int
    ) -> dict[TopicPartition, int]:
        client = self._consumer()
        offsets: dict[TopicPartition, int] = {}
        for partition in partitions:
            watermarks: tuple[int, int] | None = client.get_watermark_offsets(
                rd(partition), timeout=self._config.request_timeout_s, cached=False
            )
            if watermarks is None:
                raise KafkaTimeoutError(f"no watermarks for {partition} in time")
            offsets[partition] = watermarks[which]
        return offsets

    def _pause_now(self, partitions: Sequence[TopicPartition], pause: bool) -> None:
        # Applied in the worker after the loop asked for it: a rebalance may have
        # come in between and reset what is paused, so apply the state as it is
        # now, not the request (a stale pause would never be resumed).
        del pause
        client = self._consumer()
        paused = self._paused
        targets = [partition for partition in partitions if partition in self._assignment]
        to_pause = [rd(partition) for partition in targets if partition in paused]
        to_resume = [rd(partition) for partition in targets if partition not in paused]
        if to_pause:
            client.pause(to_pause)
        if to_resume:
            client.resume(to_resume)
