"""The requests a point sends, in order. A request-count point has its list made
up front; a duration point starts with one batch and builds the next batches in
the background while it runs, each from fresh prompts (a new seed per batch), so
no prompt is sent twice and the server's prefix cache cannot flatter TTFT however
long the point runs. A request whose job is not built yet waits for it, and that
wait shows as client lag (open loop) rather than being hidden."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One request ready to send."""

    body: bytes
    prompt: str
    input_tokens: int
    output_tokens: int


MakeBatch = Callable[[int], Awaitable[list[Job]]]
"""Builds batch number N (N >= 1) of jobs."""


class JobStream:
    def __init__(self, first: list[Job], make: MakeBatch | None = None) -> None:
        self._jobs = list(first)
        self._batch = max(1, len(first))
        self._make = make
        self._made = 1
        self._task: asyncio.Task[None] | None = None

    @property
    def built(self) -> int:
        return len(self._jobs)

    async def get(self, i: int) -> Job:
        """Job ``i``; a fixed list repeats only when it has no way to make more."""
        if self._make is None:
            return self._jobs[i % len(self._jobs)]
        if i >= len(self._jobs) - self._batch // 2 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._extend())
        while i >= len(self._jobs):
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._extend())
            await asyncio.shield(self._task)
        return self._jobs[i]

    async def _extend(self) -> None:
        assert self._make is not None
        try:
            self._jobs += await self._make(self._made)
            self._made += 1
        finally:
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
