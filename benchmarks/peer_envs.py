"""Where cases run besides the project's interpreter: the peers' virtualenvs, and the
sources of a ``--baseline``.

The peers' virtualenvs: one per peer, made by the run itself, installed from PyPI.

kpn/kstreams installs under the import name ``kstreams``, as this project does,
so no peer shares an interpreter with the project or with another peer. Each
virtualenv lives in ``benchmarks/results/venvs/NAME`` (gitignored) and is
reused while the requirements written in its ``requirements.txt`` are the
ones asked for; anything else makes it anew.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "benchmarks" / "results" / "venvs"


@dataclass(frozen=True)
class Peer:
    name: str
    #: What the tables call it.
    label: str
    requirements: tuple[str, ...]
    #: The distributions whose installed versions the report records.
    reported: tuple[str, ...]


def peers() -> list[Peer]:
    # confluent_kafka.aio needs confluent-kafka >= 2.13.0 (2.12 had it under
    # confluent_kafka.experimental.aio); pinned to the project's own version so
    # that the raw loop and the asyncio client run the same librdkafka.
    confluent = importlib.metadata.version("confluent-kafka")
    return [
        Peer("kpn", "kpn/kstreams 0.34.6", ("kstreams==0.34.6",), ("kstreams", "aiokafka")),
        Peer(
            "faststream",
            "FastStream 0.7.8",
            ("faststream[kafka]==0.7.8",),
            ("faststream", "aiokafka", "fast-depends"),
        ),
        Peer(
            "aio",
            "confluent_kafka.aio",
            (f"confluent-kafka=={confluent}",),
            ("confluent-kafka",),
        ),
    ]


def prepare(envs: set[str], log: Path) -> dict[str, Any]:
    """Make the virtualenvs of the peers the selected cases need; per peer, its
    versions, or ``{"error": ...}`` (its cases then fail with that error)."""
    needed = envs - {"project", "baseline"}
    out: dict[str, Any] = {}
    for peer in peers():
        if peer.name not in needed:
            continue
        print(f"  virtualenv for {peer.label}: {' '.join(peer.requirements)}", flush=True)
        try:
            out[peer.name] = {"label": peer.label, "versions": ensure(peer, log)}
        except (OSError, subprocess.SubprocessError) as exc:
            out[peer.name] = {"label": peer.label, "error": f"{exc!r} (see {log})"}
    return out


BASELINE_DIR = VENVS.parent / "baseline"


def prepare_baseline(ref: str) -> str:
    """Extract ``src/`` of git ``ref`` into ``results/baseline``; its short commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    if BASELINE_DIR.exists():
        shutil.rmtree(BASELINE_DIR)
    BASELINE_DIR.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "src"], capture_output=True, cwd=ROOT, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(BASELINE_DIR, filter="data")
    return commit


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure(peer: Peer, log: Path | None = None) -> dict[str, str]:
    """Make (or reuse) the peer's virtualenv; the installed versions of its packages."""
    home = VENVS / peer.name
    wanted = "\n".join(peer.requirements) + "\n"
    marker = home / "requirements.txt"
    if not (marker.exists() and marker.read_text() == wanted and python_of(peer.name).exists()):
        if home.exists():
            shutil.rmtree(home)
        VENVS.mkdir(parents=True, exist_ok=True)
        out = log.open("a") if log else subprocess.DEVNULL
        try:
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
            subprocess.run(
                [str(python_of(peer.name)), "-m", "pip", "install", "-q", *peer.requirements],
                check=True,
                stdout=out,
                stderr=out,
                timeout=600,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        marker.write_text(wanted)
    script = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    done = subprocess.run(
        [str(python_of(peer.name)), "-c", script, *peer.reported],
        capture_output=True,
        text=True,
        check=True,
    )
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


if __name__ == "__main__":
    for each in peers():
        if len(sys.argv) < 2 or each.name in sys.argv[1:]:
            print(each.name, ensure(each), flush=True)
