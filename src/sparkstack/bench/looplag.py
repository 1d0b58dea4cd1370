"""How late the client's own event loop runs while a point is measured: a task
asks to wake every ``period`` and records how much later it woke. A loop busy
with other work (a slow client, a CPU burner, garbage collection) stamps reads
late and sends late; this is the witness of that."""

from __future__ import annotations

import asyncio
import time


class LoopLagMonitor:
    def __init__(self, period: float = 0.005) -> None:
        self._period = period
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        clock = time.perf_counter
        while True:
            due = clock() + self._period
            await asyncio.sleep(self._period)
            self.lags_ms.append(max(0.0, (clock() - due) * 1000))

    def start(self) -> None:
        self.lags_ms = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.lags_ms
