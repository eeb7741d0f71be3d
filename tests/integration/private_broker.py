"""A Tansu broker of one test's own, which the test may kill and start again on the same port."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.broker import free_port, tansu_binary


class PrivateBroker:
    """One Tansu process on a fixed loopback port; in-memory storage, so a restart is empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

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
                f"kstreams-{uuid.uuid4().hex[:8]}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self._accepts():
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not listen on {self.bootstrap} in {timeout_s} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything, as in a crash."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


@contextmanager
def private_broker() -> Iterator[PrivateBroker]:
    broker = PrivateBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
