"""Rebalance listeners a stream can be given."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kstreams.exceptions import CommitFailedError
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from kstreams.engine import StreamEngine
    from kstreams.streams import Stream

logger = logging.getLogger("kstreams.rebalance")


class RebalanceListener:
    """Override either callback. ``stream`` and ``engine`` are set before the first call.

    Both are awaited before the rebalance goes on: ``on_partitions_revoked``
    with the partitions this consumer is losing (all of them, eagerly, and
    once more when the stream stops), ``on_partitions_assigned`` with its new
    assignment. Records of revoked partitions that were handled are already
    committed when auto-commit is on.
    """

    def __init__(self) -> None:
        self.stream: Stream | None = None
        self.engine: StreamEngine | None = None

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Called before ``revoked`` move to another consumer."""

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Called once ``assigned`` are this consumer's."""


class ManualCommitRebalanceListener(RebalanceListener):
    """With ``enable_auto_commit=False``: before partitions move (and when the stream
    stops), commit what was handled of them, so the next owner does not read it again.

    Only handled records are committed: a record still in hand when the
    revoke's drain timed out, or one whose handler failed, is read again.
    """

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        consumer = self.stream.consumer if self.stream is not None else None
        if consumer is None:
            return
        committed = consumer.committed_offsets()
        offsets = {
            tp: offset
            for tp, offset in consumer.handled_offsets().items()
            if tp in revoked and committed.get(tp) != offset
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # Too late for this generation: the next owner reads them again.
            logger.warning("commit before revoke failed, records will be redelivered: %s", exc)


class MetricsRebalanceListener(RebalanceListener):
    """kpn/kstreams' default listener, which kept its metrics right across rebalances.

    ``PrometheusMonitor`` reads each stream's assignment at scrape time, so
    there is nothing to keep right: this is a plain ``RebalanceListener``,
    here so that code subclassing it keeps working.
    """
