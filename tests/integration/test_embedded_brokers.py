"""The embedded test brokers themselves: reachable, and reachable from this machine only."""

from __future__ import annotations

import os

import pytest

from tests.broker import EMBEDDED, listening_addresses

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1"}
# The embedded brokers this run starts ($KSTREAMS_TEST_BROKER), even with an external one.
CHOSEN = os.environ.get("KSTREAMS_TEST_BROKER", "both").strip().lower()


@pytest.mark.parametrize("kind", [k for k in EMBEDDED if CHOSEN in (k, "both")])
def test_the_broker_listens_on_loopback_only(kind: str, request: pytest.FixtureRequest) -> None:
    """Every socket the embedded broker listens on (control ports included) is bound to
    loopback, and one of them is the bootstrap port."""
    bootstrap: str = request.getfixturevalue(f"{kind}_bootstrap")
    listening = listening_addresses(bootstrap)
    port = int(bootstrap.rsplit(":", 1)[1])
    assert ("127.0.0.1", port) in listening
    assert {address for address, _ in listening} <= LOOPBACK, listening
