"""Functions an engine runs around its start and stop."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

Hook = Callable[[], Any]
HOOK_NAMES = ("on_startup", "after_startup", "on_stop", "after_stop")

logger = logging.getLogger("kstreams.hooks")


class Hooks:
    """Sync or async callables per moment, run in the order they were added."""

    def __init__(self, **initial: Iterable[Hook] | None) -> None:
        self._hooks: dict[str, list[Hook]] = {name: [] for name in HOOK_NAMES}
        for name, hooks in initial.items():
            for hook in hooks or ():
                self.add(name, hook)

    def add(self, name: str, hook: Hook) -> Hook:
        if not callable(hook):
            raise TypeError(f"{name} hook {hook!r} is not callable")
        self._hooks[name].append(hook)
        return hook

    async def run(self, name: str) -> None:
        """Run the hooks of ``name`` in order; the first that raises stops the rest."""
        for hook in self._hooks[name]:
            result = hook()
            if inspect.isawaitable(result):
                await result

    async def run_all(self, name: str) -> list[Exception]:
        """Run every hook of ``name`` in order, whatever fails; return the errors."""
        errors: list[Exception] = []
        for hook in self._hooks[name]:
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                logger.exception("%s hook %r failed", name, hook)
                errors.append(exc)
        return errors

    def decorator(self, name: str) -> Callable[[Hook], Hook]:
        return lambda hook: self.add(name, hook)


__all__ = ["Hook", "Hooks"]
