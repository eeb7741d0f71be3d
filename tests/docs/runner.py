"""Run every ```python block of one Markdown page, in order: ``python runner.py PAGE.md``.

How a page's blocks run, so that a writer knows what a block may assume:

* All blocks of a page share one namespace, like cells of a notebook: a block
  may use what an earlier block on the page defined. Pages do not share.
* ``await`` works at the top level of a block; such blocks run on the page's
  own event loop, so an engine started in one block is still running in the
  next. A block without top-level ``await`` runs as plain code (so
  ``asyncio.run(main())`` works in it).
* A block whose first line is ``# name.py`` is written to a file of that name
  in the working directory (an importable module) instead of being run. Such
  files named ``test_*.py`` are then run with pytest, as a user would.
* ``KSTREAMS_BACKEND=memory``: ``create_engine()`` needs no broker. Each block
  has 30 seconds; at the end every engine still running is stopped.

Exit status 0 when every block ran; else 1, with the page, line and traceback
of the first block that failed.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOCK_TIMEOUT_S = 30.0
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\s`]*)")
FILE_BLOCK = re.compile(r"^#\s*(?P<name>[\w/]+\.py)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts (1-based line of its first code line)."""

    line: int
    info: str
    code: str


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with list indentation removed."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        found.append(Block(line=i + 2, info=info.lower(), code="\n".join(body) + "\n"))
        i = j + 1
    return found


def python_blocks(text: str) -> list[Block]:
    return [b for b in blocks(text) if b.info in ("python", "py")]


def _stop_engines(namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    from kstreams.engine import StreamEngine

    for value in list(namespace.values()):
        if isinstance(value, StreamEngine) and value.started:
            loop.run_until_complete(asyncio.wait_for(value.stop(), BLOCK_TIMEOUT_S))


def run_page(page: Path, workdir: Path) -> int:
    os.environ["KSTREAMS_BACKEND"] = "memory"
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    loop = asyncio.new_event_loop()
    tests: list[str] = []
    try:
        for block in python_blocks(page.read_text()):
            where = f"{page}:{block.line}"
            named = FILE_BLOCK.match(block.code.splitlines()[0] if block.code.strip() else "")
            if named is not None:
                target = workdir / named["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code)
                if target.name.startswith("test_"):
                    tests.append(named["name"])
                continue
            source = "\n" * (block.line - 1) + block.code  # tracebacks show page lines
            try:
                code = compile(source, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                if code.co_flags & inspect.CO_COROUTINE:
                    awaited = eval(code, namespace)
                    loop.run_until_complete(asyncio.wait_for(awaited, BLOCK_TIMEOUT_S))
                else:
                    exec(code, namespace)
            except BaseException:
                print(f"block at {where} failed:", file=sys.stderr)
                traceback.print_exc()
                return 1
    finally:
        _stop_engines(namespace, loop)
        loop.close()
    if tests:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *tests],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            print(f"pytest of {page}'s {tests} failed:\n{result.stdout}{result.stderr}")
            return 1
    return 0


if __name__ == "__main__":
    page_arg, workdir_arg = sys.argv[1:3]
    sys.exit(run_page(Path(page_arg).resolve(), Path(workdir_arg).resolve()))
