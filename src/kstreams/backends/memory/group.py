"""One consumer group's coordinator: members, the join barrier, assignors, commits.

Rebalances are eager, behind a barrier: every member revokes and rejoins,
then the group moves to the next generation and assigns. A member that does
not rejoin within its rebalance timeout is dropped from the group.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from kstreams.exceptions import ConfigError, KafkaError
from kstreams.records import TopicPartition

if TYPE_CHECKING:
    from kstreams.backends.memory.cluster import MemoryCluster
    from kstreams.backends.memory.consumer import MemoryConsumer

logger = logging.getLogger("kstreams.backends.memory")

ASSIGNORS: Final = ("roundrobin", "range")


class Group:
    """One consumer group's coordinator state: members, the join barrier, commits."""

    def __init__(self, cluster: MemoryCluster, group_id: str | None) -> None:
        self.cluster = cluster
        self.group_id = group_id
        self.members: dict[str, MemoryConsumer] = {}
        self.generation = 0
        self.rebalancing = False
        self.joined: set[str] = set()
        self.rebalance_started = 0.0
        self.assignments: dict[str, frozenset[TopicPartition]] = {}
        self.committed: dict[TopicPartition, int] = {}

    def is_current(self, member_id: str, generation: int | None) -> bool:
        """Whether ``member_id`` belongs to the group's current generation: who may commit."""
        return member_id in self.members and generation == self.generation

    def check_protocol(self, strategies: Sequence[str]) -> None:
        common = set(strategies)
        for member in self.members.values():
            common &= set(member._strategies)
        if not common:
            raise KafkaError(
                f"group {self.group_id!r}: assignment strategies {list(strategies)} "
                "share none with the group's members (inconsistent group protocol)"
            )

    def add(self, member: MemoryConsumer) -> None:
        self.members[member._member_id] = member
        self.request_rebalance()

    def remove(self, member_id: str) -> None:
        if self.members.pop(member_id, None) is None:
            return
        self.joined.discard(member_id)
        self.assignments.pop(member_id, None)
        if not self.members:
            self.rebalancing = False
            self.joined.clear()
            self.assignments = {}
            if self.group_id is None:
                self.cluster._private_groups.discard(self)
        elif self.rebalancing:
            self.maybe_complete()
        else:
            self.request_rebalance()

    def request_rebalance(self) -> None:
        if not self.rebalancing:
            self.rebalancing = True
            self.joined = set()
            self.rebalance_started = time.monotonic()
        self.wake_all()

    def join(self, member_id: str) -> None:
        self.joined.add(member_id)
        self.maybe_complete()

    def maybe_complete(self) -> None:
        if not self.rebalancing or not self.joined.issuperset(self.members):
            return
        self.rebalancing = False
        self.generation += 1
        self.assignments = self._assign() if self.members else {}
        self.wake_all()

    def expire(self, now: float) -> None:
        """Drop members that did not rejoin the current rebalance within their timeout."""
        if not self.rebalancing:
            return
        for member_id, member in list(self.members.items()):
            if member_id in self.joined:
                continue
            if now >= self.rebalance_started + member._rebalance_timeout:
                logger.warning(
                    "member %s of group %r did not rejoin within %.0f ms; removed from the group",
                    member_id,
                    self.group_id,
                    member._rebalance_timeout * 1000,
                )
                self.members.pop(member_id)
                self.assignments.pop(member_id, None)
        self.maybe_complete()

    def next_deadline(self) -> float | None:
        if not self.rebalancing:
            return None
        pending = [m._rebalance_timeout for i, m in self.members.items() if i not in self.joined]
        return self.rebalance_started + min(pending) if pending else None

    def waiting_on_polling_member(self) -> bool:
        """Whether a member that still has to rejoin is inside ``getmany``, so will soon."""
        return self.rebalancing and any(
            member._polling for i, member in self.members.items() if i not in self.joined
        )

    def topic_created(self, topic: str) -> None:
        if any(member._matches_new_topic(topic) for member in self.members.values()):
            self.request_rebalance()

    def wake_all(self) -> None:
        for member in list(self.members.values()):
            member._wake()

    def _assign(self) -> dict[str, frozenset[TopicPartition]]:
        leader = next(iter(self.members.values()))
        strategy = next(
            (
                s
                for s in leader._strategies
                if all(s in m._strategies for m in self.members.values())
            ),
            leader._strategies[0],
        )
        topics = self.cluster._topics
        subscriptions = {
            member_id: member._subscribed_topics(topics)
            for member_id, member in sorted(self.members.items())
        }
        counts = {
            topic: len(topics[topic]) for wanted in subscriptions.values() for topic in wanted
        }
        assign = range_assign if strategy == "range" else round_robin_assign
        return {member: frozenset(tps) for member, tps in assign(subscriptions, counts).items()}


def range_assign(
    subscriptions: dict[str, frozenset[str]], counts: dict[str, int]
) -> dict[str, list[TopicPartition]]:
    result: dict[str, list[TopicPartition]] = {member: [] for member in subscriptions}
    for topic in sorted(counts):
        consumers = [member for member, wanted in subscriptions.items() if topic in wanted]
        share, extra = divmod(counts[topic], len(consumers))
        for index, member in enumerate(consumers):
            start = share * index + min(index, extra)
            length = share + (1 if index < extra else 0)
            result[member].extend(TopicPartition(topic, p) for p in range(start, start + length))
    return result


def round_robin_assign(
    subscriptions: dict[str, frozenset[str]], counts: dict[str, int]
) -> dict[str, list[TopicPartition]]:
    result: dict[str, list[TopicPartition]] = {member: [] for member in subscriptions}
    ring = itertools.cycle(subscriptions)
    for topic in sorted(counts):
        for partition in range(counts[topic]):
            member = next(ring)
            while topic not in subscriptions[member]:
                member = next(ring)
            result[member].append(TopicPartition(topic, partition))
    return result


def strategy_names(strategy: Any) -> tuple[str, ...]:
    items = (
        [strategy] if isinstance(strategy, str) or not isinstance(strategy, Iterable) else strategy
    )
    names: list[str] = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if name not in ASSIGNORS:
            raise ConfigError(
                f"the memory backend supports partition_assignment_strategy {ASSIGNORS}, "
                f"got {item!r}"
            )
        names.append(name)
    if not names:
        raise ConfigError("partition_assignment_strategy is empty")
    return tuple(names)
