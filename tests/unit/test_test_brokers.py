"""The test-broker switch: which brokers a run uses, and the group timings each accepts."""

from __future__ import annotations

import pytest

from tests.broker import broker_kinds, group_timings


@pytest.mark.parametrize(
    ("broker", "kinds"),
    [(None, ["tansu", "noida"]), ("both", ["tansu", "noida"]), ("Noida", ["noida"])],
)
def test_kstreams_test_broker_picks_the_embedded_brokers(
    monkeypatch: pytest.MonkeyPatch, broker: str | None, kinds: list[str]
) -> None:
    """Unset or "both" runs Tansu and noida-db; a name runs that one (case-insensitive)."""
    monkeypatch.delenv("KSTREAMS_TEST_BOOTSTRAP", raising=False)
    if broker is None:
        monkeypatch.delenv("KSTREAMS_TEST_BROKER", raising=False)
    else:
        monkeypatch.setenv("KSTREAMS_TEST_BROKER", broker)
    assert broker_kinds() == kinds


def test_an_external_bootstrap_replaces_the_embedded_brokers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$KSTREAMS_TEST_BOOTSTRAP means one external broker, whatever $KSTREAMS_TEST_BROKER says."""
    monkeypatch.setenv("KSTREAMS_TEST_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("KSTREAMS_TEST_BROKER", "tansu")
    assert broker_kinds() == ["external"]


def test_an_unknown_broker_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelled $KSTREAMS_TEST_BROKER fails loudly, naming the accepted values."""
    monkeypatch.delenv("KSTREAMS_TEST_BOOTSTRAP", raising=False)
    monkeypatch.setenv("KSTREAMS_TEST_BROKER", "kafka")
    with pytest.raises(ValueError, match="tansu, noida or both"):
        broker_kinds()


def test_only_tansu_gets_sessions_under_six_seconds() -> None:
    """An address no embedded broker serves (external Kafka) gets the 6 s minimum sessions
    that noida-db and Kafka's default group.min.session.timeout.ms demand."""
    assert group_timings("kafka.example:9092")["session_timeout_ms"] == 6000
