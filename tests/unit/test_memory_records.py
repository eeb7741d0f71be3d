"""What the memory backend hands out: fresh records per fetch, and its connection status."""

from __future__ import annotations

from kstreams.backends.memory import MemoryCluster, MemoryConsumer
from kstreams.records import TopicPartition

TP = TopicPartition("t", 0)


async def started(cluster: MemoryCluster, group_id: str | None = None) -> MemoryConsumer:
    consumer = MemoryConsumer(cluster, group_id=group_id, auto_offset_reset="earliest")
    consumer.subscribe(["t"])
    await consumer.start()
    return consumer


async def test_every_fetch_hands_out_new_record_objects() -> None:
    """Two consumers, and one consumer reading an offset twice, get equal but distinct records."""
    cluster = MemoryCluster()
    cluster.append("t", b"v", b"k", headers=[("h", b"1")])
    first, second = await started(cluster, "a"), await started(cluster, "b")
    (one,) = (await first.getmany(timeout_ms=100))[TP]
    (other,) = (await second.getmany(timeout_ms=100))[TP]
    first.seek(TP, 0)
    (again,) = (await first.getmany(timeout_ms=100))[TP]
    assert one == other == again
    assert one is not other
    assert one is not again
    (stored,) = cluster.records(TP)
    assert stored == one
    assert stored is not one
    await first.stop()
    await second.stop()


async def test_a_handler_changing_its_record_never_changes_the_log() -> None:
    """Assigning to a fetched record's value, key or headers leaves what others read unchanged."""
    cluster = MemoryCluster()
    cluster.append("t", b"original", b"k")
    consumer = await started(cluster, "g")
    try:
        (record,) = (await consumer.getmany(timeout_ms=100))[TP]
        record.value = b"changed"
        record.key = None
        record.headers = [("added", b"")]
        consumer.seek(TP, 0)
        (again,) = (await consumer.getmany(timeout_ms=100))[TP]
        assert (again.key, again.value, again.headers) == (b"k", b"original", ())
        (stored,) = cluster.records(TP)
        assert stored.value == b"original"
    finally:
        await consumer.stop()


async def test_connected_is_true_for_a_memory_consumer() -> None:
    """The in-process cluster is always reachable: connected() says True, before and after
    start."""
    cluster = MemoryCluster()
    consumer = MemoryConsumer(cluster, group_id="g")
    consumer.subscribe(["t"])
    assert consumer.connected() is True
    await consumer.start()
    assert consumer.connected() is True
    await consumer.stop()
