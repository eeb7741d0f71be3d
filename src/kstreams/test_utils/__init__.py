"""Unit-test a service on the in-memory broker, whatever backend it was written for.

::

    async with TestStreamClient(engine, topics=["payments-out"]) as client:
        await client.send("payments-in", value=b"42", key="user-1")
        out = await client.get_event(topic_name="payments-out")
        assert out.value == b"42"
    # here every record sent was handled, and committed by auto-committing streams

Entering the client moves the engine (and any stream with a backend of its
own) onto a fresh :class:`~kstreams.backends.memory.MemoryCluster` and starts
it; leaving it waits until the engine's running streams have handled every
record of the topics they consume, stops the engine, and gives it back its
own backend. Nothing connects to a broker. The cluster, and with it every
topic, record and commit, belongs to the client: two clients share nothing.

A handler that raises fails the test: with a policy that stops its stream
(``STOP``, ``STOP_ENGINE``), leaving the block raises the handler's
exception, and so does a ``get_event`` waiting meanwhile.
"""

from kstreams.test_utils.client import RecordsNotHandledError, TestStreamClient
from kstreams.test_utils.topics import ManagedTopic, TopicInfo, TopicManager

__all__ = [
    "ManagedTopic",
    "RecordsNotHandledError",
    "TestStreamClient",
    "TopicInfo",
    "TopicManager",
]
