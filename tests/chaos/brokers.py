"""A private Tansu broker a test may kill, freeze and bring back on the same port.

``tests/broker.py`` starts the session's shared broker; a test that takes its
broker away needs one of its own. Tansu's storage here is memory only, so a
killed broker comes back empty (topics, logs and groups gone), while a frozen
one (SIGSTOP) keeps everything and answers again after SIGCONT.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

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


class TansuProcess:
    """One Tansu process on a fixed loopback port, restartable on that port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.cluster_id = f"chaos-{uuid.uuid4().hex[:8]}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        url = f"tcp://{self.bootstrap}"
        self._proc = subprocess.Popen(
            [
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
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not answers_kafka(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not answer on {self.bootstrap} in {timeout_s}s")
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


@contextlib.contextmanager
def private_tansu() -> Iterator[TansuProcess]:
    """A started ``TansuProcess``, stopped (whatever state it is in) on exit."""
    broker = TansuProcess()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
