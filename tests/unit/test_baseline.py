"""The baseline model (default_when_idle, issue 15) without processes: it is
never put away for idling, it may come back only when put away (not failed, not
held back, not while the watchdog forbids starts), and it never comes back by
evicting something: without room it stays put away."""

from __future__ import annotations

import aiohttp

from sparkstack.planner.plan import MachinePlan, ModelPlan, StackPlan
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import idle_policy
from sparkstack.supervisor.baseline import may_return
from sparkstack.supervisor.runtime import ModelState
from sparkstack.supervisor.supervisor import Supervisor

GIB = 2**30
STACK = load_stack_text(
    """
models:
  big: {engine: llamacpp, model: big.gguf, policy: on_demand, idle_timeout: 1s}
  base: {engine: llamacpp, model: base.gguf, policy: on_demand, idle_timeout: 1s,
         default_when_idle: true}
""",
    "stack.yaml",
)


def plan(budget_gib: float) -> StackPlan:
    def model(name: str, gib: float) -> ModelPlan:
        return ModelPlan(
            name=name, engine="llamacpp", model=f"{name}.gguf", policy="on_demand",
            weights_bytes=int(gib * GIB), total_bytes=int(gib * GIB),
        )  # fmt: skip

    return StackPlan(
        machine=MachinePlan(
            name="test", device="cpu", unified=True, total_bytes=int(100 * GIB),
            reserve_bytes=0, budget_bytes=int(budget_gib * GIB), bandwidth_bytes_per_s=None,
        ),  # fmt: skip
        models=[model("big", 6), model("base", 2)],
        start_order=[], resident_bytes=0, peak_bytes=6 * GIB, fits=True, overflow_bytes=0,
    )  # fmt: skip


async def supervisor(budget_gib: float, session: aiohttp.ClientSession) -> Supervisor:
    return Supervisor(STACK, Settings.from_env(), session, plan=plan(budget_gib))


async def test_the_baseline_never_idles_out() -> None:
    async with aiohttp.ClientSession() as session:
        sup = await supervisor(7, session)
    for runtime in sup.models.values():
        runtime.state = ModelState.READY
        runtime.last_used = 0.0
    assert idle_policy.idle_due(sup.models["big"], now=100.0)
    assert not idle_policy.idle_due(sup.models["base"], now=100.0)


async def test_the_baseline_returns_only_when_put_away() -> None:
    async with aiohttp.ClientSession() as session:
        sup = await supervisor(7, session)
    base = sup.models["base"]
    for state, back in (
        (ModelState.STOPPED, True),
        (ModelState.SLEEPING, True),
        (ModelState.READY, False),
        (ModelState.STARTING, False),
        (ModelState.FAILED, False),
    ):
        base.state = state
        assert may_return(base, None, {}) is back, state
    base.state = ModelState.STOPPED
    assert not may_return(base, "memory is low", {})
    assert not may_return(base, None, {"base": "node lost"})
    assert not may_return(sup.models["big"], None, {})


async def test_without_room_the_baseline_stays_put_away() -> None:
    async with aiohttp.ClientSession() as session:
        sup = await supervisor(7, session)
        big = sup.models["big"]
        big.state = ModelState.READY
        big.inflight = 1  # in use: may not be evicted for the baseline either
        await sup.restore_baseline()
        assert sup.models["base"].state is ModelState.STOPPED
        assert big.state is ModelState.READY
