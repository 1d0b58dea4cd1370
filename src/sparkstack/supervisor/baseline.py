"""The baseline model (``default_when_idle``): the on-demand model a stack falls
back to. It starts with the stack, is never put away for idling, may be evicted
to make room for a larger model, and comes back by itself once another model
has been put away (idle) or evicted and it fits again. The supervisor triggers
the return; this module says when it may happen."""

from __future__ import annotations

from sparkstack.supervisor.runtime import ModelRuntime, ModelState


def may_return(runtime: ModelRuntime, admitting: str | None, held_back: dict[str, str]) -> bool:
    """True when the baseline is put away (stopped or asleep, not failed) and nothing
    forbids starts now (the memory watchdog, a lost node)."""
    return (
        runtime.spec.default_when_idle
        and runtime.state in (ModelState.STOPPED, ModelState.SLEEPING)
        and admitting is None
        and runtime.name not in held_back
    )
