"""examples/dlq.py and examples/batch.py run as documented and print what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_dlq_example_retries_dead_letters_and_moves_on() -> None:
    """Order 2 is tried three times, dead-lettered with its error, and order 3 is billed."""
    lines = run_example("dlq.py")
    assert lines.count("order 2: attempt failed (negative amount)") == 3
    assert "order 1: billed 10" in lines
    assert "order 3: billed 7" in lines
    assert (
        "dead letter: key=b'2' value=b'{\"id\": 2, \"amount\": -5}' "
        "error=builtins.ValueError: order 2 has a negative amount attempts=3"
    ) in lines
    assert lines[-1] == "billed [1, 3]; 1 dead letter; 'orders' committed to 3"


def test_batch_example_writes_in_batches_of_at_most_five() -> None:
    """Twelve records arrive in batches of at most five and all of them are committed."""
    lines = run_example("batch.py")
    assert lines[0] == "produced 12 records with one send_many"
    batches = [line for line in lines if line.startswith("batch of ")]
    sizes = [int(line.split()[2].rstrip(":")) for line in batches]
    assert sum(sizes) == 12
    assert all(1 <= size <= 5 for size in sizes)
    assert lines[-1] == f"12 records written in {len(sizes)} batches; committed offset 12"
