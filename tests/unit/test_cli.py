"""`kstreams run module:engine`: start, log subscriptions, stop gracefully on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kstreams import ConsumerRecord, StreamErrorPolicy, create_engine
from kstreams.cli import _load_engine, main, serve

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.unit.cli_app:engine"


class Service:
    """``python -m kstreams run`` of the CLI test app in a subprocess."""

    def __init__(self, out: Path, env: dict[str, str], *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kstreams", "run", APP, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env, "APP_OUT": str(out)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def handled(self) -> list[int]:
        if not self.out.exists():
            return []
        return [int(line) for line in self.out.read_text().split()]

    def wait_in_hand(self, timeout_s: float = 30.0) -> None:
        """Until the handler has started on a record."""
        self._wait(lambda: Path(f"{self.out}.in-hand").exists(), "no record in hand", timeout_s)

    def wait_handled(self, count: int, timeout_s: float = 30.0) -> None:
        self._wait(lambda: len(self.handled()) >= count, f"{count} not handled", timeout_s)

    def _wait(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _, err = self.proc.communicate(timeout=5)
                pytest.fail(f"{what}; exit {self.proc.returncode}:\n{err}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout_s: float = 30.0) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


StartService = Callable[..., Service]


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[StartService]:
    started: list[Service] = []

    def start(env: dict[str, str], *args: str) -> Service:
        service = Service(tmp_path / f"handled-{len(started)}", env, *args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def memory_env(**extra: str) -> dict[str, str]:
    return {"KSTREAMS_BACKEND": "memory", "APP_TOPIC": "cli-in", "APP_GROUP": "cli-g", **extra}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_service_after_committing(
    service_factory: StartService, signum: int
) -> None:
    """SIGTERM/SIGINT: exit 0, every record handled and committed, subscriptions logged."""
    service = service_factory(memory_env(APP_COUNT="20"))
    service.wait_handled(20)
    service.signal(signum)
    code, err = service.finish()
    assert code == 0, err
    assert service.handled() == list(range(20))
    assert Path(f"{service.out}.committed").read_text() == "20"
    assert "stream 'handle' subscribed to ['cli-in'] as group 'cli-g'; assigned: cli-in[0]" in err
    assert f"{signal.Signals(signum).name} received: stopping gracefully" in err
    assert "stopped gracefully" in err


def test_the_record_in_hand_finishes_and_is_committed(service_factory: StartService) -> None:
    """A signal during a slow handler lets that record finish; it is committed, none after it."""
    service = service_factory(memory_env(APP_COUNT="50", APP_DELAY="0.2"))
    service.wait_handled(2)
    service.signal(signal.SIGTERM)
    code, err = service.finish()
    assert code == 0, err
    handled = service.handled()
    assert 2 <= len(handled) < 50
    assert handled == list(range(len(handled)))
    assert Path(f"{service.out}.committed").read_text() == str(len(handled))


def test_a_stuck_handler_is_bounded_by_the_graceful_timeout(service_factory: StartService) -> None:
    """A handler that never finishes is cancelled: the stop still ends within the timeout."""
    service = service_factory(memory_env(APP_COUNT="1", APP_DELAY="600"), "--graceful-timeout", "1")
    service.wait_in_hand()
    started = time.monotonic()
    service.signal(signal.SIGTERM)
    code, err = service.finish()
    took = time.monotonic() - started
    assert code == 0, err
    assert took < 5, f"stopping took {took:.1f}s"
    assert service.handled() == []
    assert Path(f"{service.out}.committed").read_text() == "None"
    assert "will be redelivered" in err


def test_a_second_signal_forces_exit(service_factory: StartService) -> None:
    """Another signal while stopping exits at once with 128 + the signal number."""
    service = service_factory(memory_env(APP_COUNT="1", APP_DELAY="600"))
    service.wait_in_hand()
    service.signal(signal.SIGTERM)
    time.sleep(0.3)
    service.signal(signal.SIGTERM)
    code, err = service.finish(timeout_s=10)
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM received again: exiting now" in err


def test_a_wrong_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown module or attribute exits 2 with a message naming it."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "tests.unit.cli_app_missing:engine"])
    assert caught.value.code == 2
    assert "cannot load 'tests.unit.cli_app_missing:engine'" in capsys.readouterr().err


def test_load_engine_resolves_attributes_and_factories() -> None:
    """module:attr finds an engine, calls a factory, and refuses anything else."""
    assert _load_engine(f"{__name__}:ENGINE") is ENGINE
    assert _load_engine(f"{__name__}:make_engine") is ENGINE
    with pytest.raises(ValueError, match="not a StreamEngine"):
        _load_engine(f"{__name__}:ROOT")
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        _load_engine(f"{__name__}:nope")


ENGINE = create_engine(backend="memory")


def make_engine() -> object:
    return ENGINE


async def test_serve_exits_1_when_a_stream_stops_the_engine() -> None:
    """A stream failing with STOP_ENGINE ends serve() with status 1, no signal needed."""
    engine = create_engine(backend="memory")

    @engine.stream(
        "boom",
        group_id="g",
        auto_offset_reset="earliest",
        error_policy=StreamErrorPolicy.STOP_ENGINE,
    )
    async def explode(cr: ConsumerRecord[bytes, bytes]) -> None:
        raise RuntimeError("boom")

    @engine.after_startup
    async def produce() -> None:
        await engine.send("boom", value=b"x")  # after the stream joined: "latest" sees it

    assert await serve(engine, graceful_timeout_s=5) == 1
    assert not engine.started


async def test_serve_exits_1_when_the_engine_fails_to_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A startup failure is logged and ends serve() with status 1."""

    def refuse() -> None:
        raise RuntimeError("no database")

    engine = create_engine(backend="memory", on_startup=[refuse])
    assert await serve(engine, graceful_timeout_s=5) == 1
    assert "failed to start" in caplog.text
    assert not engine.started
