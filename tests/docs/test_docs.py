"""Every ```python block in docs/ and README.md runs; the site builds with --strict."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.runner import blocks, python_blocks

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("runner.py")
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])


def _clean_env() -> dict[str, str]:
    """The environment of a user's shell: none of pytest's variables, src importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "KSTREAMS"))}
    return {**env, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    """The page's Python blocks run in order on the memory backend, bounded."""
    if not python_blocks(page.read_text()):
        return  # a page of prose and shell commands only
    result = subprocess.run(
        [sys.executable, "-W", "error", str(RUNNER), str(page), str(tmp_path)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_block_parser_finds_indented_and_file_blocks() -> None:
    """Fences inside list items are found and dedented; the info string is kept."""
    text = "- item\n\n  ```python\n  x = 1\n  ```\n\n```sh\nls\n```\n```python\n# app.py\n```\n"
    found = blocks(text)
    assert [(b.line, b.info, b.code) for b in found] == [
        (4, "python", "x = 1\n"),
        (8, "sh", "ls\n"),
        (11, "python", "# app.py\n"),
    ]


def test_a_failing_block_fails_the_page(tmp_path: Path) -> None:
    """A block that raises makes the runner exit 1 naming the page line."""
    page = tmp_path / "bad.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n```python\nawait missing()\n```\n")
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(page), str(tmp_path)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"block at {page}:8 failed" in result.stderr
    assert "NameError: name 'missing' is not defined" in result.stderr


def test_the_site_builds_strictly_offline(tmp_path: Path) -> None:
    """mkdocs build --strict succeeds: no broken link, no missing page, no warning."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None, "mkdocs is in the test extra"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "index.html").exists()
