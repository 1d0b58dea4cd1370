"""The memory watchdog: samples available memory at least 4 times a second
(MemAvailable, never MemFree; NVML free memory on discrete GPUs). Below the host
reserve it stops admitting wakes, puts idle on-demand models away, and stops a
model that is still starting (its start is what pushed the host under the floor),
marking it ``failed: memory spike``. Admission resumes 1% (at least 64 MiB)
above the floor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

from sparkstack.machine import MachineProfile
from sparkstack.supervisor.runtime import ModelState

if TYPE_CHECKING:
    from sparkstack.supervisor.supervisor import Supervisor

log = logging.getLogger("sparkstack.watchdog")
Sampler = Callable[[], int]


def host_available() -> int:
    return int(psutil.virtual_memory().available)


def nvml_free() -> int:
    import pynvml

    pynvml.nvmlInit()
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free)
    finally:
        pynvml.nvmlShutdown()


def sampler_for(machine: MachineProfile) -> Sampler:
    """NVML free memory on a discrete GPU; MemAvailable on unified memory and CPUs."""
    return nvml_free if machine.device == "cuda" and not machine.unified else host_available


class MemoryWatchdog:
    def __init__(
        self,
        supervisor: Supervisor,
        floor_bytes: int,
        sample: Sampler,
        period: float = 0.25,
        on_sample: Callable[[int, int], None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.on_sample = on_sample
        self.floor = floor_bytes
        self.sample = sample
        self.period = period
        self.available = 0
        self.low = False
        self.trips = 0

    def _read(self) -> int:
        """One sample; a sampler that fails (no NVML library, a driver error) is
        replaced by host MemAvailable rather than leaving the host unwatched."""
        try:
            return self.sample()
        except Exception as exc:  # noqa: BLE001  (NVMLError and OSError alike)
            if self.sample is host_available:
                raise
            log.warning("memory watchdog: %r; watching host MemAvailable instead", exc)
            self.sample = host_available
            return self.sample()

    async def run(self) -> None:
        while True:
            self.available = await asyncio.to_thread(self._read)
            if self.on_sample:
                self.on_sample(self.available, self.floor)
            if self.available < self.floor:
                await self._act()
            elif self.low and self.available > self.floor + max(64 * 2**20, self.floor // 100):
                self.low = False
                self.supervisor.admitting = None
                log.warning("memory back above the host reserve: %.2f GiB available",
                            self.available / 2**30)  # fmt: skip
            await asyncio.sleep(self.period)

    async def _act(self) -> None:
        sup = self.supervisor
        if not self.low:
            self.low = True
            self.trips += 1
            log.warning("memory watchdog: %.2f GiB available, below the host reserve of "
                        "%.2f GiB", self.available / 2**30, self.floor / 2**30)  # fmt: skip
        sup.admitting = (
            f"the memory watchdog holds new starts: {self.available / 2**30:.2f} GiB "
            f"available, below the host reserve of {self.floor / 2**30:.2f} GiB"
        )
        for runtime in list(sup.models.values()):
            if runtime.state is ModelState.STARTING:
                log.error("%s: stopped while starting - memory spike", runtime.name)
                sup.note_event(runtime, "memory_spike")
                await sup.abort_start(runtime.name, "memory spike")
            elif sup.evictable(runtime):
                log.warning("%s: put away to free memory", runtime.name)
                sup.note_event(runtime, "watchdog_put_away")
                await sup.unload(runtime.name)  # idle: the drain is immediate
