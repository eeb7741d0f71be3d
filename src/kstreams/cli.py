"""Run a service: ``kstreams run module:engine`` (or ``python -m kstreams run ...``).

The command imports the engine, starts it, logs what each stream consumes,
and runs until SIGINT or SIGTERM. Then it stops gracefully: each stream lets
its record in hand finish and commits what was handled, the consumers leave
their groups, and the producer delivers what it holds, all within
``--graceful-timeout`` seconds. A second signal exits at once, with status
128 + the signal number.

Exit status: 0 after a graceful stop; 1 when the engine failed to start,
a stream stopped on an error, or the graceful stop ran out of time; 2 for
a wrong command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from kstreams._version import __version__
from kstreams.engine import StreamEngine
from kstreams.validation import plural

logger = logging.getLogger("kstreams.cli")

#: The part of ``--graceful-timeout`` a stream's record in hand may take; the
#: rest is for commits, leaving the groups and flushing the producer.
HANDLER_SHARE = 0.8

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load_engine(target: str) -> StreamEngine:
    """``pkg.module:attr`` (``attr`` defaults to ``engine``); a factory function is called
    for it. Every way of getting it wrong is a ``ValueError`` saying what was found."""
    module_name, _, attr_path = target.partition(":")
    if not module_name:
        raise ValueError(f"expected 'module:engine', got {target!r}")
    module = importlib.import_module(module_name)
    found: Any = module
    for attr in (attr_path or "engine").split("."):
        try:
            found = getattr(found, attr)
        except AttributeError:
            missing = attr_path or "engine"
            raise ValueError(f"{module_name!r} has no attribute {missing!r}") from None
    if callable(found) and not isinstance(found, type | StreamEngine):
        try:
            found = found()
        except Exception as exc:
            raise ValueError(
                f"{target!r} is a function; calling it with no arguments to get the engine "
                f"raised {type(exc).__name__}: {exc}"
            ) from exc
        if inspect.isawaitable(found):
            close = getattr(found, "close", None)
            if callable(close):
                close()  # never awaited: say so instead of warning about it
            raise ValueError(f"{target!r} is an async function; it must return the engine")
    if not isinstance(found, StreamEngine):
        raise ValueError(
            f"{target!r} is {_describe(found)}, not a StreamEngine "
            "(the result of kstreams.create_engine(), or a function returning one)"
        )
    return found


def _describe(found: Any) -> str:
    if isinstance(found, type):
        return f"the class {found.__name__}"
    if inspect.ismodule(found):
        return f"the module {found.__name__}"
    return f"a {type(found).__name__}"


def _describe_streams(engine: StreamEngine) -> None:
    for stream in engine.streams:
        what = f"pattern {stream.topics[0]!r}" if stream.subscribe_by_pattern else stream.topics
        if stream.is_generator:
            logger.info(
                "stream %r (%s, group %r) is a generator: it starts when the app iterates it",
                stream.name,
                what,
                stream.group_id,
            )
            continue
        assigned = sorted(stream.consumer.assignment()) if stream.consumer is not None else []
        partitions = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "none yet"
        logger.info(
            "stream %r subscribed to %s as group %r; assigned: %s",
            stream.name,
            what,
            stream.group_id,
            partitions,
        )


async def serve(engine: StreamEngine, *, graceful_timeout_s: float = 30.0) -> int:
    """Run ``engine`` until SIGINT/SIGTERM (or until it stops on its own); the exit status."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            logger.info(
                "%s received: stopping gracefully within %.1fs (send it again to force)",
                name,
                graceful_timeout_s,
            )
            stop_requested.set()
        else:
            logger.warning("%s received again: exiting now", name)
            logging.shutdown()
            os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    # The engine may stop on its own (a stream's STOP_ENGINE error policy).
    engine.after_stop(stop_requested.set)
    for stream in engine.streams:
        stream.graceful_timeout_s = min(
            stream.graceful_timeout_s, graceful_timeout_s * HANDLER_SHARE
        )
    try:
        try:
            started = await _start_unless_stopped(engine, stop_requested)
        except Exception:
            logger.exception("engine %r failed to start", engine.title)
            return EXIT_FAILED
        if not started:
            return await _stop(engine, graceful_timeout_s, failed=[])
        logger.info(
            "engine %r running on the %s backend with %s",
            engine.title,
            engine.backend.name,
            plural(len(engine.streams), "stream"),
        )
        _describe_streams(engine)
        await stop_requested.wait()
        # Streams already down when the stop began were stopped by their error policy.
        failed = [s.name for s in engine.streams if s.error is not None and not s.running]
        return await _stop(engine, graceful_timeout_s, failed=failed)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _start_unless_stopped(engine: StreamEngine, stop_requested: asyncio.Event) -> bool:
    """Start ``engine``; False if a signal came first. Joining a group may wait on the
    broker for as long as it keeps the group rebalancing: a signal cancels that start."""
    starting = asyncio.ensure_future(engine.start())
    signalled = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not starting.done():
        starting.cancel()
        await asyncio.wait({starting})
        logger.info("engine %r stopped while it was starting", engine.title)
        return False
    starting.result()
    return True


async def _stop(engine: StreamEngine, graceful_timeout_s: float, *, failed: list[str]) -> int:
    try:
        await asyncio.wait_for(engine.stop(), graceful_timeout_s)
    except TimeoutError:
        logger.error("the engine did not stop within %.1fs", graceful_timeout_s)
        return EXIT_FAILED
    if failed:
        logger.error("the engine stopped because streams failed: %s", ", ".join(failed))
        return EXIT_FAILED
    logger.info("engine %r stopped gracefully", engine.title)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kstreams", description="Run kstreams services.")
    parser.add_argument("--version", action="version", version=f"kstreams {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an engine until SIGINT/SIGTERM")
    run.add_argument("target", help="where the engine is: 'package.module:engine'")
    run.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long stopping may take: records in hand, commits, producer flush (30)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log written to stderr (INFO)",
    )
    run.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path to import the target from (.)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.graceful_timeout <= 0:
        parser.error("--graceful-timeout must be positive")
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, os.path.abspath(args.app_dir))
    try:
        engine = _load_engine(args.target)
    except (ImportError, ValueError) as exc:
        parser.error(f"cannot load {args.target!r}: {exc}")
    except Exception as exc:  # the module itself raised while importing
        raised = f"{type(exc).__name__}: {exc}"
        parser.error(f"cannot load {args.target!r}: importing it raised {raised}")
    return asyncio.run(serve(engine, graceful_timeout_s=args.graceful_timeout))
