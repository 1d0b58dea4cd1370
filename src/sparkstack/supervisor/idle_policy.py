"""The idle policy: an on-demand model that is ready, serves nobody and has not
been used for its ``idle_timeout`` is put away (asleep where its engine can
sleep, otherwise stopped). The baseline model (``default_when_idle``) is what
the stack falls back to when idle, so it is never put away for idling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sparkstack.stack.schema import Policy
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

log = logging.getLogger("sparkstack.supervisor")
PutAway = Callable[[str], Awaitable[str]]
Note = Callable[[ModelRuntime, str], None]


def idle_due(runtime: ModelRuntime, now: float) -> bool:
    """True when ``runtime`` should be put away at monotonic time ``now``."""
    spec = runtime.spec
    return (
        spec.policy is Policy.ON_DEMAND
        and not spec.default_when_idle
        and runtime.state is ModelState.READY
        and runtime.inflight == 0
        and runtime.waiting == 0
        and not runtime.draining
        and now - runtime.last_used > spec.idle_timeout
    )


async def idle_loop(
    models: dict[str, ModelRuntime], put_away: PutAway, note: Note, period: float = 0.5
) -> None:
    """Every ``period`` seconds, put away each model ``idle_due`` says is idle."""
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        for runtime in list(models.values()):
            if idle_due(runtime, now):
                log.info("%s idle for %.0fs: putting it away", runtime.name,
                         runtime.spec.idle_timeout)  # fmt: skip
                note(runtime, "idle")
                await put_away(runtime.name)
