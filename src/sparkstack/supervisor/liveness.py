"""Liveness after ready: an engine whose process stays alive but stops answering
(deadlocked, SIGSTOPped, wedged in a driver call) is found by a bounded periodic
probe, and one that takes requests but sends no byte for ``stall_timeout`` by the
stall check. Either way the engine is reported hung; the supervisor kills it and
handles it as a crash (failed, restarted per policy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from sparkstack.supervisor.runtime import ModelRuntime, ModelState

HungReport = Callable[[str], Awaitable[None]]


async def probe_once(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], limit_s: float
) -> bool:
    """True when ``url`` answers 200 within ``limit_s`` seconds."""
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=limit_s)
        ) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def stalled_for(runtime: ModelRuntime, now: float) -> float:
    """Seconds the engine has had requests in flight without sending a byte."""
    if runtime.inflight <= 0:
        return 0.0
    return now - max(runtime.last_byte, runtime.busy_since)


async def watch_liveness(
    runtime: ModelRuntime,
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    report_hung: HungReport,
) -> None:
    """Probe ``url`` every ``liveness_interval`` while the model is ready; after
    ``liveness_failures`` failures in a row, or a stall, call ``report_hung`` once."""
    spec = runtime.spec
    if spec.liveness_interval <= 0:
        return
    process = runtime.process
    failures = 0
    while runtime.process is process:
        await asyncio.sleep(spec.liveness_interval)
        if runtime.state is not ModelState.READY:
            failures = 0
            continue
        stall = stalled_for(runtime, time.monotonic())
        if spec.stall_timeout > 0 and stall > spec.stall_timeout:
            await report_hung(
                f"hung: {runtime.inflight} requests in flight and no byte from the engine "
                f"for {stall:.0f}s (stall_timeout {spec.stall_timeout:g}s)"
            )
            return
        if await probe_once(session, url, headers, spec.liveness_timeout):
            failures = 0
            continue
        failures += 1
        if failures >= spec.liveness_failures:
            await report_hung(
                f"hung: {failures} liveness probes of {url} in a row got no answer within "
                f"{spec.liveness_timeout:g}s"
            )
            return
