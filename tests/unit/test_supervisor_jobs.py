"""The supervisor's jobs on their own, without processes (issue 18): the memory
ledger (held, resident, fits, eviction order, who holds the room), the idle
policy, and the restart policy after crashes."""

from __future__ import annotations

import asyncio

from sparkstack.engines.registry import get_engine
from sparkstack.planner.plan import MachinePlan, ModelPlan, StackPlan
from sparkstack.stack import load_stack_text
from sparkstack.stack.schema import Policy
from sparkstack.supervisor import idle_policy, restarts
from sparkstack.supervisor.ledger import MemoryLedger, evictable
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

GIB = 2**30
STACK = load_stack_text(
    """
models:
  big: {engine: vllm, model: org/big}
  small: {engine: vllm, model: org/small, policy: on_demand, idle_timeout: 10s}
  tiny: {engine: vllm, model: org/tiny, policy: on_demand, idle_timeout: 10s}
""",
    "stack.yaml",
)


def plan(budget_gib: float, unified: bool = True) -> StackPlan:
    def model(name: str, gib: float, policy: Policy) -> ModelPlan:
        return ModelPlan(
            name=name, engine="vllm", model=f"org/{name}", policy=policy.value,
            weights_bytes=int(gib * GIB * 0.75), overhead_bytes=int(gib * GIB * 0.25),
            total_bytes=int(gib * GIB), spike_bytes=0,
        )  # fmt: skip

    return StackPlan(
        machine=MachinePlan(
            name="test", device="cuda", unified=unified, total_bytes=int(100 * GIB),
            reserve_bytes=0, budget_bytes=int(budget_gib * GIB), bandwidth_bytes_per_s=None,
        ),  # fmt: skip
        models=[
            model("big", 8, Policy.ALWAYS_ON),
            model("small", 4, Policy.ON_DEMAND),
            model("tiny", 2, Policy.ON_DEMAND),
        ],
        start_order=["big"], resident_bytes=8 * GIB, peak_bytes=12 * GIB, fits=True,
        overflow_bytes=0,
    )  # fmt: skip


def runtimes() -> dict[str, ModelRuntime]:
    return {
        name: ModelRuntime(spec=spec, adapter=get_engine(spec.engine))
        for name, spec in STACK.models.items()
    }


def test_the_ledger_counts_what_each_state_holds() -> None:
    models = runtimes()
    ledger = MemoryLedger(plan(20), models)
    assert ledger.resident_bytes() == 0
    models["big"].state = ModelState.READY
    models["small"].state = ModelState.SLEEPING
    models["small"].sleep_level = 1  # weights stay in the unified pool
    models["tiny"].state = ModelState.SLEEPING
    models["tiny"].sleep_level = 2
    assert ledger.held_bytes(models["big"]) == 8 * GIB
    assert ledger.held_bytes(models["small"]) == 4 * GIB
    assert ledger.held_bytes(models["tiny"]) == int(2 * GIB * 0.25)
    discrete = MemoryLedger(plan(20, unified=False), models)
    assert discrete.held_bytes(models["small"]) == GIB  # level 1 moved weights to the host


def test_the_ledger_evicts_least_recently_used_idle_models_only() -> None:
    models = runtimes()
    ledger = MemoryLedger(plan(12), models)
    for name, used in (("big", 1.0), ("small", 5.0), ("tiny", 3.0)):
        models[name].state = ModelState.READY
        models[name].last_used = used
    assert not ledger.fits("small") or ledger.resident_bytes() <= 12 * GIB
    victim = ledger.next_victim("small")
    assert victim is not None and victim.name == "tiny"  # big is always on
    models["tiny"].inflight = 1
    assert not evictable(models["tiny"])
    assert ledger.next_victim("small") is None
    assert "big 8.00 GiB (always on)" in ledger.no_room("small")
    assert "tiny 2.00 GiB (in use)" in ledger.no_room("small")


def test_a_model_fits_when_the_rest_leave_room() -> None:
    models = runtimes()
    ledger = MemoryLedger(plan(12), models)
    models["big"].state = ModelState.READY
    assert ledger.fits("small")  # 8 + 4 <= 12
    models["tiny"].state = ModelState.READY
    assert not ledger.fits("small")  # 8 + 2 + 4 > 12
    assert MemoryLedger(None, models).fits("small")  # no plan: no ledger


def test_the_idle_policy_puts_away_only_idle_on_demand_models() -> None:
    models = runtimes()
    small, big = models["small"], models["big"]
    small.state = big.state = ModelState.READY
    small.last_used = big.last_used = 100.0
    assert not idle_policy.idle_due(small, 105.0)
    assert idle_policy.idle_due(small, 111.0)
    assert not idle_policy.idle_due(big, 1000.0)  # always on
    small.inflight = 1
    assert not idle_policy.idle_due(small, 1000.0)
    small.inflight, small.waiting = 0, 1
    assert not idle_policy.idle_due(small, 1000.0)


async def test_the_idle_loop_calls_put_away_once_due() -> None:
    models = runtimes()
    models["small"].state = ModelState.READY
    put: list[str] = []
    noted: list[str] = []
    done = asyncio.Event()

    async def put_away(name: str) -> str:
        put.append(name)
        models[name].state = ModelState.STOPPED
        done.set()
        return "stopped"

    loop = asyncio.create_task(
        idle_policy.idle_loop(models, put_away, lambda rt, e: noted.append(e), period=0.01)
    )
    await asyncio.wait_for(done.wait(), 5)
    loop.cancel()
    assert put == ["small"] and noted == ["idle"]


def test_restarts_back_off_and_give_up() -> None:
    models = runtimes()
    big, small = models["big"], models["small"]
    big.ready_at = 100.0
    assert restarts.restarts_after_crash(big, 110.0)
    assert [restarts.next_delay(big) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 16.0, None]
    assert restarts.restarts_after_crash(big, 100.0 + restarts.STABLE_SECONDS + 1)
    assert big.restarts == 0  # it had been stable: a fresh budget
    assert not restarts.restarts_after_crash(small, 110.0)  # on demand: woken by requests
