"""What an installed kstreams tells about itself: version, CLI, license, pytest plugin, dev.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

import kstreams
from kstreams.cli import _load_engine, main

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_comes_from_the_package_metadata() -> None:
    """kstreams.__version__ is the installed distribution's version."""
    assert kstreams.__version__ == metadata.version(PYPROJECT["project"]["name"])


def test_cli_prints_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`kstreams --version` prints the version and exits 0."""
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"kstreams {kstreams.__version__}"


def test_metadata_has_license_classifiers_and_urls() -> None:
    """pyproject names Apache-2.0 (with the LICENSE file), classifiers and project URLs."""
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Documentation", "Source", "Changelog"} <= set(project["urls"])
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    assert project["entry-points"]["pytest11"] == {"kstreams": "kstreams.pytest_plugin"}


NOT_AN_ENGINE = 42


def needs_arguments(x: int) -> None:
    """A function that cannot be the engine's factory."""


@pytest.mark.parametrize(
    ("attr", "said"),
    [
        ("NOT_AN_ENGINE", "is a int, not a StreamEngine"),
        ("needs_arguments", "calling it with no arguments to get the engine raised TypeError"),
        ("ROOT", "is a PosixPath, not a StreamEngine"),
        ("Path", "is the class Path, not a StreamEngine"),
    ],
)
def test_a_target_that_is_not_an_engine_exits_2(
    attr: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kstreams run mod:not_an_engine` is a usage error (2) that says what it found."""
    with pytest.raises(SystemExit) as caught:
        main(["run", f"{__name__}:{attr}"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot load '{__name__}:{attr}'" in err
    assert said in err


def test_an_async_factory_is_refused_without_a_warning() -> None:
    """An async def factory is named as such; its coroutine is closed, not left unawaited."""

    async def factory() -> None: ...

    module = ModuleType("kstreams_async_factory")
    module.engine = factory  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(ValueError, match="is an async function"):
            _load_engine(module.__name__)
    finally:
        del sys.modules[module.__name__]


def test_cli_exit_status_for_a_non_engine_in_a_subprocess(tmp_path: Path) -> None:
    """The real command: exit 2 and one usage line, no traceback."""
    (tmp_path / "svc.py").write_text("def not_an_engine():\n    return 'nope'\n")
    result = subprocess.run(
        [sys.executable, "-m", "kstreams", "run", "svc:not_an_engine", "--app-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'svc:not_an_engine' is a str, not a StreamEngine" in result.stderr
    assert "Traceback" not in result.stderr


def _load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kstreams_dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_demo_installs_only_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dev.py demo` pip-installs "." (no extras); `test` afterwards adds the test extra."""
    dev = _load_dev()
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "VENV", venv)
    monkeypatch.setattr(dev, "PY", venv / "bin" / "python")
    monkeypatch.setattr(dev, "run", lambda *args, env=None: calls.append(tuple(map(str, args))))
    monkeypatch.setattr(sys, "argv", ["dev.py", "demo"])
    dev.demo()
    installs = [c for c in calls if "-e" in c]
    assert installs[-1][-1] == "."
    assert calls[-1][-1] == "examples/demo.py"
    calls.clear()
    dev.ensure_venv("test")
    assert [c[-1] for c in calls if "-e" in c] == [".[test]"]
    calls.clear()
    dev.ensure_venv("")  # the test extras already there satisfy the demo
    assert calls == []


def test_readme_style_async_test_runs_in_a_fresh_project(tmp_path: Path) -> None:
    """With only kstreams installed, an unmarked async test and async fixture run and pass."""
    (tmp_path / "app.py").write_text(
        "from kstreams import ConsumerRecord, Send, create_engine\n"
        "engine = create_engine(title='shop')\n"
        "@engine.stream('orders', group_id='shop', auto_offset_reset='earliest')\n"
        "async def ship(cr: ConsumerRecord[bytes, bytes], send: Send) -> None:\n"
        "    await send('shipped', value=cr.value.upper(), key=cr.key)\n"
    )
    (tmp_path / "test_app.py").write_text(
        "import pytest\n"
        "from kstreams.test_utils import TestStreamClient\n"
        "from app import engine\n"
        "@pytest.fixture\n"
        "async def client():\n"
        "    async with TestStreamClient(engine, topics=['shipped']) as client:\n"
        "        yield client\n"
        "async def test_orders_are_shipped(client) -> None:\n"
        "    await client.send('orders', value=b'book', key=b'user-1')\n"
        "    shipped = await client.get_event(topic_name='shipped')\n"
        "    assert shipped.value == b'BOOK'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "KSTREAMS"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
