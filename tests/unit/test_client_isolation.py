"""The core never imports a Kafka client: only the adapter of the chosen backend does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCK_CLIENTS = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("aiokafka", "confluent_kafka"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def run_without_clients(code: str) -> subprocess.CompletedProcess[str]:
    script = BLOCK_CLIENTS + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_memory_backend_runs_with_neither_client_installed() -> None:
    """kstreams imports, produces and consumes on memory with aiokafka and confluent_kafka gone."""
    result = run_without_clients(
        """
        import asyncio, sys
        import kstreams
        from kstreams import ConsumerRecord, create_engine

        async def main():
            engine = create_engine(backend="memory")
            got = asyncio.Event()

            @engine.stream("isolated", group_id="g", auto_offset_reset="earliest")
            async def handle(cr: ConsumerRecord) -> None:
                got.set()

            await engine.start()
            await engine.send("isolated", value=b"x")
            await asyncio.wait_for(got.wait(), 10)
            await engine.stop()
            loaded = [m for m in sys.modules if m.split(".")[0] in ("aiokafka", "confluent_kafka")]
            print("clients loaded:", loaded)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert "clients loaded: []" in result.stdout


def test_confluent_without_the_library_names_the_extra() -> None:
    """Choosing confluent without confluent-kafka installed says which extra to install."""
    result = run_without_clients(
        """
        from kstreams import create_engine
        from kstreams.exceptions import BackendNotAvailableError
        engine = create_engine(backend="confluent")
        try:
            engine.backend.create_producer({})
        except BackendNotAvailableError as exc:
            print("error:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "kstreams-hex[confluent]" in result.stdout
