"""Waiting for an engine to serve: an async HTTP probe every 50 ms (on loopback a
refused connection costs microseconds, and a wake's latency is the engine's start
plus at most one probe period), bounded by a timeout, giving up at once when the
process exits."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from sparkstack.errors import EngineStartError
from sparkstack.supervisor.engine_process import EngineProcess
from sparkstack.supervisor.process import describe_exit

_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)
PROBE_PERIOD = 0.05


def log_tail(process: EngineProcess, lines: int = 15) -> str:
    try:
        text = process.log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def wait_ready(
    session: aiohttp.ClientSession,
    url: str,
    process: EngineProcess,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> float:
    """Poll ``url`` until it answers 200; returns seconds waited."""
    start = time.perf_counter()
    while True:
        if process.returncode is not None:
            raise EngineStartError(
                f"{process.name}: the engine {describe_exit(process.returncode)} before it was "
                f"ready; last lines of {process.log_path}:\n{log_tail(process)}"
            )
        try:
            async with session.get(url, timeout=_PROBE_TIMEOUT, headers=headers) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except (aiohttp.ClientError, TimeoutError):
            pass
        elapsed = time.perf_counter() - start
        if elapsed > deadline:
            raise EngineStartError(
                f"{process.name}: not ready after {deadline:g}s (probing {url}); raise "
                f"startup_timeout or read {process.log_path}"
            )
        await asyncio.sleep(PROBE_PERIOD)
