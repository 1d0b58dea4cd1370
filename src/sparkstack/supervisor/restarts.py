"""The restart policy after a crash: an always-on engine is restarted with
exponential back-off (1, 2, 4, 8, 16 s) up to ``MAX_RESTARTS`` times in a row; one
that had served for ``STABLE_SECONDS`` before it crashed gets a fresh budget. An
on-demand engine is not restarted: its next request wakes it."""

from __future__ import annotations

from sparkstack.stack.schema import Policy
from sparkstack.supervisor.runtime import ModelRuntime

MAX_RESTARTS = 5
STABLE_SECONDS = 60.0
"""An engine that served this long before crashing gets a fresh restart budget."""


def restarts_after_crash(runtime: ModelRuntime, now: float) -> bool:
    """Whether a crashed model is restarted at all; resets the budget of one that
    had been stable."""
    if runtime.spec.policy is not Policy.ALWAYS_ON:
        return False
    if now - runtime.ready_at > STABLE_SECONDS:
        runtime.restarts = 0
    return True


def next_delay(runtime: ModelRuntime) -> float | None:
    """Seconds to wait before the next restart attempt (counting it), or None once
    the budget is spent."""
    if runtime.restarts >= MAX_RESTARTS:
        return None
    delay = 2.0**runtime.restarts
    runtime.restarts += 1
    return delay
