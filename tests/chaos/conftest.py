"""Fixtures of the chaos tier: a private broker per module, each scenario on each real backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.chaos.brokers import BrokerProcess, private_broker


@pytest.fixture(scope="module")
def chaos_broker(request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    """A broker of this module's own (its ``CHAOS_BROKER`` kind, or
    ``$KSTREAMS_CHAOS_BROKER``): chaos load never slows another module's broker."""
    kind = os.environ.get("KSTREAMS_CHAOS_BROKER") or request.module.CHAOS_BROKER
    with private_broker(kind) as broker:
        yield broker


@pytest.fixture(params=["aiokafka", "confluent"])
def backend(request: pytest.FixtureRequest) -> str:
    """The client library the group members run on."""
    name: str = request.param
    return name


@pytest.fixture
def names() -> tuple[str, str]:
    """A topic and a group no other test uses."""
    suffix = uuid.uuid4().hex[:10]
    return f"chaos-{suffix}", f"chaos-g-{suffix}"
