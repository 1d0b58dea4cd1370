"""The memory ledger: what each model holds of the plan's budget now (loaded,
asleep, stopped), whether a model fits beside the others, which idle models may
be evicted to make room (least recently used first), and who holds the memory
when nothing may go. Pure bookkeeping over the plan: no I/O."""

from __future__ import annotations

from sparkstack.planner.plan import StackPlan
from sparkstack.stack.schema import Policy
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

GIB = 2**30


def evictable(runtime: ModelRuntime) -> bool:
    """An on-demand model that holds memory and serves nobody: may be put away."""
    return (
        runtime.spec.policy is Policy.ON_DEMAND
        and runtime.state in (ModelState.READY, ModelState.SLEEPING)
        and runtime.inflight == 0
        and runtime.waiting == 0
        and runtime.queued == 0
        and not runtime.draining
    )


def drainable(runtime: ModelRuntime) -> bool:
    """A ready on-demand model busy only with requests it is serving (none waiting
    for a wake): may be drained and then put away when nothing idle can go."""
    return (
        runtime.spec.policy is Policy.ON_DEMAND
        and runtime.state is ModelState.READY
        and runtime.waiting == 0
        and not runtime.draining
    )


class MemoryLedger:
    def __init__(self, plan: StackPlan | None, models: dict[str, ModelRuntime]) -> None:
        self.plan = plan
        self.models = models

    @property
    def unified(self) -> bool:
        """True when CPU and GPU share the pool (or without a plan: assume so)."""
        return self.plan is None or self.plan.machine.unified

    def held_bytes(self, runtime: ModelRuntime) -> int:
        """What a model holds now: its planned total while loaded; asleep, its runtime
        overhead, plus its weights if level 1 left them in the same (unified) pool."""
        if self.plan is None or runtime.state in (ModelState.STOPPED, ModelState.FAILED):
            return 0
        model = self.plan.model(runtime.name)
        if runtime.state is ModelState.SLEEPING:
            weights_stay = runtime.sleep_level == 1 and self.plan.machine.unified
            return model.overhead_bytes + (model.weights_bytes if weights_stay else 0)
        return model.total_bytes

    def resident_bytes(self) -> int:
        """Planned memory of every model that holds memory now."""
        return sum(self.held_bytes(rt) for rt in self.models.values())

    def need_bytes(self, name: str) -> int:
        """What starting ``name`` adds: its total and first-request spike, less what it
        already holds (asleep)."""
        if self.plan is None:
            return 0
        model = self.plan.model(name)
        return model.total_bytes + model.spike_bytes - self.held_bytes(self.models[name])

    def fits(self, name: str) -> bool:
        if self.plan is None:
            return True
        return self.resident_bytes() + self.need_bytes(name) <= self.plan.machine.budget_bytes

    def next_victim(self, name: str) -> ModelRuntime | None:
        """The least recently used idle on-demand model other than ``name``, if any."""
        idle = [rt for rt in self.models.values() if rt.name != name and evictable(rt)]
        return min(idle, key=lambda rt: rt.last_used) if idle else None

    def busy_victim(self, name: str) -> ModelRuntime | None:
        """When no idle model can go: the least recently used busy one to drain."""
        busy = [rt for rt in self.models.values() if rt.name != name and drainable(rt)]
        return min(busy, key=lambda rt: rt.last_used) if busy else None

    def no_room(self, name: str) -> str:
        """Why ``name`` cannot start: what it needs, what is free, who holds the rest."""
        budget = self.plan.machine.budget_bytes if self.plan else 0
        holders = []
        for rt in self.models.values():
            held = self.held_bytes(rt)
            if rt.name != name and held:
                if rt.spec.policy is Policy.ALWAYS_ON:
                    why = "always on"
                else:
                    why = "in use" if rt.inflight or rt.waiting else rt.state.value
                holders.append(f"{rt.name} {held / GIB:.2f} GiB ({why})")
        free = budget - self.resident_bytes()
        return (
            f"{name} needs {self.need_bytes(name) / GIB:.2f} GiB but only {free / GIB:.2f} GiB "
            f"of the {budget / GIB:.2f} GiB budget are free; held by: "
            f"{', '.join(holders) or 'nothing'}"
        )
