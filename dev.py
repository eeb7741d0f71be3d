#!/usr/bin/env python3
"""Bootstrap and run the project with nothing but python3.

    python3 dev.py demo   # a producer and a stream on the in-memory broker
    python3 dev.py test   # lint, types, unit tier, integration tier (real broker)
    python3 dev.py bench  # the benchmarks (see benchmarks/README.md)
    python3 dev.py docs   # build the documentation site into site/ (mkdocs --strict)
    python3 dev.py setup  # only create .venv

Creates ``.venv`` and installs the package the first time (``demo``: the
library alone; the others: with its test extras), and again whenever
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_venv(extras: str) -> None:
    """A ``.venv`` with the package and ``extras`` (comma-separated; "" for the library
    alone), installed again only when pyproject.toml changed or an extra is missing."""
    stamp = VENV / ".kstreams-install"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = {e for e in extras.split(",") if e}
    if stamp.exists():
        have_digest, _, have = stamp.read_text().partition(" ")
        if have_digest == digest and wanted <= {e for e in have.split(",") if e}:
            return
        wanted |= {e for e in have.split(",") if e} if have_digest == digest else set()
    if not PY.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{','.join(sorted(wanted))}]" if wanted else "."
    run(PY, "-m", "pip", "install", "--quiet", "-e", target)
    stamp.write_text(f"{digest} {','.join(sorted(wanted))}")


def demo() -> None:
    # The demo runs on the in-memory broker: the library alone, no test toolchain.
    ensure_venv("")
    env = {**os.environ, "KSTREAMS_BACKEND": "memory"}
    run(PY, "examples/demo.py", env=env)


def test() -> None:
    ensure_venv("test")
    run(BIN / "ruff", "check", "src", "tests", "examples", "benchmarks", "dev.py", "noxfile.py")
    run(BIN / "ruff", "format", "--check", "src", "tests", "examples", "benchmarks")
    run(BIN / "mypy", "--strict", "src")
    args = sys.argv[2:]
    # Four workers on two cores: the broker tiers mostly wait (group joins,
    # session timeouts), so the suite takes about a third of the serial time.
    # Each worker starts its own brokers; -n 0 runs serially.
    workers = [] if any(a.startswith(("-n", "--numprocesses")) for a in args) else ["-n", "4"]
    run(PY, "-m", "pytest", "-p", "no:cacheprovider", *workers, *args)


def bench() -> None:
    ensure_venv("test")
    run(PY, "benchmarks/run.py", *sys.argv[2:])


def docs() -> None:
    ensure_venv("test")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run(BIN / "mkdocs", "build", "--strict", *sys.argv[2:], env=env)


def setup() -> None:
    ensure_venv("test")


COMMANDS = {"demo": demo, "test": test, "bench": bench, "docs": docs, "setup": setup}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(COMMANDS)}}} [pytest args]")
    COMMANDS[sys.argv[1]]()
