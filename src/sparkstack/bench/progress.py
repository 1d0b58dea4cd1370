"""A one-line progress bar on stderr while a point runs (redrawn 4 times a second
by its own task, never per request), and a closing line per point."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, total: int | None, duration: float | None, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.duration = duration
        self.done = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self._began = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._live = self.stream.isatty()

    def __enter__(self) -> Progress:
        self._began = time.monotonic()
        if self._live:
            self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.stream.write(("\r" if self._live else "") + self.line() + "\n")
        self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self._began
        if self.total:
            fraction = min(1.0, self.done / self.total)
            count = f"{self.done}/{self.total}"
        elif self.duration:
            fraction = min(1.0, elapsed / self.duration)
            count = f"{self.done}"
        else:
            fraction, count = 0.0, f"{self.done}"
        bar = "#" * int(fraction * 30)
        errors = f"  {self.failed} failed" if self.failed else ""
        return f"{self.label:>14} [{bar:<30}] {count} requests  {elapsed:6.1f} s{errors}"

    async def _tick(self) -> None:
        while True:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            await asyncio.sleep(0.25)
