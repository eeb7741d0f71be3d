"""Offsets a handler saw, and a bounded wait for them: shared by the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Offsets:
    """Record offsets as a handler sees them; wait (bounded) until they satisfy a condition."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self._changed = asyncio.Event()

    def add(self, offset: int) -> None:
        self.offsets.append(offset)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[int]], bool], within: float = 5) -> None:
        async def reached() -> None:
            while not predicate(self.offsets):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), within)

    async def until(self, count: int, within: float = 5) -> None:
        """Until ``count`` offsets were seen."""
        await self.wait_for(lambda offsets: len(offsets) >= count, within)
