"""The machine the run measures on: what it is, and how busy it is."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def wait_for_quiet(max_load: float, limit_s: float) -> tuple[float, float]:
    """Poll the 1-minute load every 20 s until it is below ``max_load`` (bounded)."""
    started = time.monotonic()
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() - started < limit_s:
        print(f"  1-minute load {load:.2f} >= {max_load}; waiting for a quieter machine...")
        time.sleep(20)
        load = os.getloadavg()[0]
    return load, time.monotonic() - started


def describe() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import confluent_kafka

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiokafka": importlib.metadata.version("aiokafka"),
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "kstreams_commit": commit + (" (src modified)" if dirty else ""),
    }


class LoadSampler:
    """The 1-minute load average every 10 s while the run measures."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(10):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {
            "min": min(self.samples),
            "mean": statistics.fmean(self.samples),
            "max": max(self.samples),
            "samples": len(self.samples),
        }
