"""nox sessions: ``nox -s unit``, ``integration``, ``lint``, ``typecheck``, ``docs``, ``bench``,
``chaos``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "unit", "integration"]


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy", "--strict", "src")


@nox.session
def unit(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not integration", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "integration", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The chaos tier at the issue's counts (minutes); writes tests/chaos/RESULTS.md."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "chaos", *session.posargs, env={"KSTREAMS_CHAOS": "full"})
