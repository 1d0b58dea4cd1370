"""The supervisor: the facade the gateway and `up` talk to. It starts the stack's
engines in order (largest first, each ready before the next), wakes models on
demand (one start shared by every waiter, room made by evicting idle models),
puts idle ones away, restarts crashed ones, and stops them all on shutdown.

Each job lives in its own module: lifecycle.py (one engine process), ledger.py
(memory held and room to start), idle_policy.py, restarts.py, liveness.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from sparkstack.containers.launch import engine_image
from sparkstack.engines.base import MemoryEstimate
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SparkstackError, SupervisorError
from sparkstack.planner.plan import StackPlan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Policy, Stack
from sparkstack.supervisor import baseline, idle_policy, restarts
from sparkstack.supervisor.drain import drained
from sparkstack.supervisor.ledger import MemoryLedger, evictable
from sparkstack.supervisor.lifecycle import EngineLifecycle
from sparkstack.supervisor.load_times import LoadTimes
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

log = logging.getLogger("sparkstack.supervisor")

ChangeListener = Callable[[ModelRuntime], None]
EventListener = Callable[[ModelRuntime, str], None]


class Supervisor:
    def __init__(
        self,
        stack: Stack,
        settings: Settings,
        session: aiohttp.ClientSession,
        on_change: ChangeListener | None = None,
        plan: StackPlan | None = None,
        on_event: EventListener | None = None,
        on_spawn: ChangeListener | None = None,
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.session = session
        self.on_change = on_change
        self.plan = plan
        self.on_event = on_event
        self.load_times = LoadTimes(settings.load_times_file)
        self.models: dict[str, ModelRuntime] = {
            name: new_runtime(stack, plan, name, self.load_times) for name in stack.models
        }
        self.ledger = MemoryLedger(plan, self.models)
        self.lifecycle = EngineLifecycle(
            settings, session, self._set, self._set_event, self._after_crash,
            self._footprint_plan, on_spawn=on_spawn, stack=stack,
            cuda=plan is not None and plan.machine.device == "cuda",
        )  # fmt: skip
        self._waking: dict[str, asyncio.Task[ModelRuntime]] = {}
        self._closing = False
        self.admitting: str | None = None
        """Why no model may start now (the memory watchdog sets it), or None."""
        self._room = asyncio.Lock()
        self._locks = {name: asyncio.Lock() for name in self.models}
        self.held_back: dict[str, str] = {}
        """Models that may not start until what they need returns (a lost node)."""
        self._background: set[asyncio.Task[None]] = set()

    @property
    def room(self) -> asyncio.Lock:
        """Held while the resident set changes (a wake making room, a reload)."""
        return self._room

    def replace(
        self,
        stack: Stack,
        plan: StackPlan | None,
        fresh: dict[str, ModelRuntime],
        removed: list[str],
    ) -> None:
        """A reload's new model set: ``removed`` leave, ``fresh`` runtimes join or take
        their name's place; the caller stops the processes of the runtimes replaced."""
        for name in removed:
            del self.models[name]
            self._locks.pop(name, None)
            self.held_back.pop(name, None)
        for name, runtime in fresh.items():
            self.models[name] = runtime
            self._locks.setdefault(name, asyncio.Lock())
        self.stack = self.lifecycle.stack = stack
        if plan is not None:
            self.plan = self.ledger.plan = plan

    # -- start order and starting ------------------------------------------------

    def start_order(self) -> list[ModelRuntime]:
        """Managed always-on models, largest first (the biggest allocation goes in first):
        the plan's order when there is a plan."""
        if self.plan is not None:
            return [
                self.models[name]
                for name in self.plan.start_order
                if self.models[name].adapter.managed
            ]
        managed = [
            rt
            for rt in self.models.values()
            if rt.adapter.managed and rt.spec.policy is Policy.ALWAYS_ON
        ]
        return sorted(managed, key=lambda rt: rt.adapter.model_bytes(rt.spec), reverse=True)

    async def start_all(self) -> None:
        """Start every always-on model in order; one that fails does not stop the others."""
        for runtime in self.start_order():
            try:
                await self.start(runtime.name)
            except SparkstackError as exc:
                log.error("%s", exc)
        await self.restore_baseline()

    async def start(self, name: str) -> ModelRuntime:
        runtime = self.models[name]
        async with self._locks[name]:
            if runtime.state is not ModelState.READY:
                runtime.load_started = began = time.monotonic()
                try:
                    await self.lifecycle.start(runtime, self._planned(name))
                finally:
                    runtime.load_started = 0.0
                await self._learn_load_time(runtime, time.monotonic() - began)
            return runtime

    async def _learn_load_time(self, runtime: ModelRuntime, seconds: float) -> None:
        """Remember a cold start's duration (load_times.py), for /v1/models and the
        Retry-After and progress of requests that wait for the next start."""
        runtime.last_load_seconds = round(seconds, 3)
        runtime.expected_load_seconds = self.load_times.record(runtime.spec, seconds)
        await asyncio.to_thread(self.load_times.write, self.load_times.dumps())

    def _planned(self, name: str) -> MemoryEstimate | None:
        if self.plan is None:
            return None
        model = self.plan.model(name)
        return model.estimate() if model.engine_args or model.engine_env else None

    def _footprint_plan(self, name: str) -> tuple[int, int]:
        planned = self.plan.model(name) if self.plan else None
        return (planned.total_bytes, planned.kv_tokens) if planned else (0, 0)

    # -- waking on demand ----------------------------------------------------------

    async def wake(self, name: str) -> ModelRuntime:
        """Start a stopped or failed model; concurrent callers share one start."""
        runtime = self.models.get(name)
        if runtime is None:
            raise SupervisorError(f"{name} was removed from the stack by a reload")
        if runtime.state is ModelState.READY:
            return runtime
        if self._closing:
            raise SupervisorError(f"{name}: the stack is shutting down")
        if self.admitting is not None:
            raise SupervisorError(f"{name} is not started: {self.admitting}")
        if name in self.held_back:
            raise SupervisorError(f"{name} is not started: {self.held_back[name]}")
        task = self._waking.get(name)
        if task is None or task.done():
            task = self._waking[name] = asyncio.create_task(self._fit_and_start(name))
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _fit_and_start(self, name: str) -> ModelRuntime:
        """One wake at a time: make room (evicting idle on-demand models, least
        recently used first), then start; the next wake sees the new resident set."""
        async with self._room:
            if name not in self.models:
                raise SupervisorError(f"{name} was removed from the stack by a reload")
            await self._make_room(name)
            runtime = self.models[name]
            if runtime.state is ModelState.SLEEPING:
                if await self._wake_from_sleep(runtime):
                    return runtime
                await self.stop(name)  # a failed wake-up: start it afresh
            return await self.start(name)

    async def _make_room(self, name: str) -> None:
        """Evict idle on-demand models, least recently used first; when none is idle,
        drain a busy one (its requests in flight finish, new ones wait) and evict it
        once empty. One that does not drain within its drain_timeout stays: the wake
        fails rather than break requests in flight."""
        while not self.ledger.fits(name):
            victim = self.ledger.next_victim(name) or self.ledger.busy_victim(name)
            if victim is None:
                raise SupervisorError(self.ledger.no_room(name))
            async with drained(victim) as empty:
                if not empty:
                    raise SupervisorError(
                        f"{self.ledger.no_room(name)}; {victim.name} still had requests in "
                        f"flight after draining {victim.spec.drain_timeout:g}s "
                        f"(models.{victim.name}.drain_timeout)"
                    )
                log.info("evicting %s (least recently used) to make room for %s",
                         victim.name, name)  # fmt: skip
                self._set_event(victim, "evicted")
                await self.stop(victim.name)
            if victim.name != self.stack.baseline:
                self._background_task(self.restore_baseline())

    async def _wake_from_sleep(self, runtime: ModelRuntime) -> bool:
        level = runtime.sleep_level or 1
        try:
            await runtime.adapter.wake_up(self.session, runtime.base_url, level, runtime.api_key)
        except SparkstackError as exc:
            log.error("%s: waking from sleep failed: %s", runtime.name, exc)
            return False
        runtime.sleep_level = None
        runtime.last_used = time.monotonic()
        self._set(runtime, ModelState.READY)
        self._set_event(runtime, f"woke_level_{level}")
        return True

    # -- memory (kept on the facade for the watchdog and the gateway) ----------------

    def held_bytes(self, runtime: ModelRuntime) -> int:
        return self.ledger.held_bytes(runtime)

    def resident_bytes(self) -> int:
        return self.ledger.resident_bytes()

    @staticmethod
    def evictable(runtime: ModelRuntime) -> bool:
        return evictable(runtime)

    async def abort_start(self, name: str, reason: str) -> None:
        """Kill a model that is still starting; its start fails with ``reason``."""
        runtime = self.models[name]
        if runtime.state is ModelState.STARTING and runtime.process is not None:
            runtime.abort_reason = reason
            await runtime.process.stop(runtime.spec.stop_timeout)

    # -- admin actions, sleep and idle ---------------------------------------------

    async def control(self, name: str, action: str) -> str:
        """The admin API's actions: load (start, making room), unload (stop), and
        sleep / wake (engines with a sleep mode; others are stopped / started)."""
        if action in ("load", "wake"):
            await self.wake(name)
            return "ready"
        if action == "sleep":
            return await self.put_away(name)
        if action == "unload":
            return await self.unload(name)
        raise SupervisorError(f"unknown action {action!r}; use load, unload, sleep or wake")

    async def unload(self, name: str) -> str:
        """Stop a model once its requests in flight are done (drain.py), or after its
        drain_timeout at the latest: an unload asked for always happens."""
        async with drained(self.models[name]):
            return await self.stop(name)

    async def put_away(self, name: str) -> str:
        """Idle handling (and admin sleep): sleep where the engine was started able
        to, otherwise stop; drained first, bounded like ``unload``."""
        async with drained(self.models[name]):
            return await self._put_away(name)

    async def _put_away(self, name: str) -> str:
        runtime = self.models[name]
        if runtime.state is not ModelState.READY or not runtime.adapter.can_sleep(
            self._planned(name)
        ):
            return await self.stop(name)
        level = runtime.adapter.sleep_level(self.ledger.unified)
        try:
            await runtime.adapter.sleep(self.session, runtime.base_url, level, runtime.api_key)
        except SparkstackError as exc:
            log.error("%s: sleep failed (%s); stopping it instead", name, exc)
            return await self.stop(name)
        runtime.sleep_level = level
        self._set(runtime, ModelState.SLEEPING)
        log.info("%s is asleep (level %d)", name, level)
        return f"asleep (level {level})"

    async def idle_loop(self, period: float = 0.5) -> None:
        """Put away on-demand models idle past their idle_timeout (idle_policy.py);
        the baseline model comes back once one has gone (baseline.py)."""
        await idle_policy.idle_loop(self.models, self._idle_put_away, self._set_event, period)

    async def _idle_put_away(self, name: str) -> str:
        outcome = await self.put_away(name)
        self._background_task(self.restore_baseline())
        return outcome

    async def restore_baseline(self) -> None:
        """Start the baseline model (default_when_idle) again when it is put away and
        fits beside what holds memory now; it never evicts anything to come back."""
        name = self.stack.baseline
        if name is None or self._closing:
            return
        async with self._room:
            runtime = self.models.get(name)
            if runtime is None or not baseline.may_return(runtime, self.admitting, self.held_back):
                return
            if not self.ledger.fits(name):
                log.info("baseline %s stays put away: %s", name, self.ledger.no_room(name))
                return
            log.info("bringing the baseline model %s back", name)
            self._set_event(runtime, "baseline_back")
            try:
                if runtime.state is ModelState.SLEEPING and await self._wake_from_sleep(runtime):
                    return
                if runtime.state is ModelState.SLEEPING:
                    await self.stop(name)
                await self.start(name)
            except SparkstackError as exc:
                log.error("baseline %s did not come back: %s", name, exc)

    def _background_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- crashes -------------------------------------------------------------------

    async def _after_crash(self, runtime: ModelRuntime, message: str) -> None:
        """Restart a crashed always-on model with back-off (restarts.py)."""
        if not restarts.restarts_after_crash(runtime, time.monotonic()):
            return  # on demand: the next request wakes it
        while runtime.failed and (delay := restarts.next_delay(runtime)) is not None:
            log.info("restarting %s in %.0fs (attempt %d of %d)", runtime.name, delay,
                     runtime.restarts, restarts.MAX_RESTARTS)  # fmt: skip
            await asyncio.sleep(delay)
            if not runtime.failed:
                return  # a request woke it meanwhile, or it was unloaded
            try:
                await self.wake(runtime.name)
                return
            except SparkstackError as exc:
                log.error("%s: restart failed: %s", runtime.name, exc)
        if runtime.failed:
            runtime.error = f"{message}; gave up after {restarts.MAX_RESTARTS} restarts"

    # -- stopping --------------------------------------------------------------------

    async def stop(self, name: str) -> str:
        return await self.lifecycle.stop(self.models[name])

    async def stop_all(self) -> dict[str, str]:
        self._closing = True
        self.lifecycle.cancel_watchers()
        for task in [*self._waking.values(), *self._background]:
            task.cancel()
        names = [rt.name for rt in self.models.values() if rt.process is not None]
        outcomes = await asyncio.gather(*(self.stop(name) for name in names))
        return dict(zip(names, outcomes, strict=True))

    async def fail(self, name: str, reason: str, event: str) -> None:
        """Stop a model whose resources went away (a lost cluster node) and mark it
        failed with ``reason``; it does not start again until ``release(name)``."""
        runtime = self.models[name]
        self.held_back[name] = reason
        if runtime.state in (ModelState.STOPPED, ModelState.FAILED):
            return
        self._set_event(runtime, event)
        await self.stop(name)
        log.error("%s failed: %s", name, reason)
        self._set(runtime, ModelState.FAILED, reason)

    def release(self, name: str) -> None:
        """What ``fail`` held back is back: the model may start on its next request."""
        self.held_back.pop(name, None)

    # -- notifications -------------------------------------------------------------

    def note_event(self, runtime: ModelRuntime, event: str) -> None:
        self._set_event(runtime, event)

    def _set_event(self, runtime: ModelRuntime, event: str) -> None:
        if self.on_event:
            self.on_event(runtime, event)

    def _set(self, runtime: ModelRuntime, state: ModelState, error: str | None = None) -> None:
        runtime.state = state
        runtime.error = error
        if self.on_change:
            self.on_change(runtime)


def new_runtime(
    stack: Stack, plan: StackPlan | None, name: str, load_times: LoadTimes
) -> ModelRuntime:
    """The runtime of model ``name`` of ``stack``, not started (an external one is
    ready at once), expecting the load time its past starts took."""
    spec = stack.models[name]
    runtime = ModelRuntime(spec=spec, adapter=get_engine(spec.engine))
    runtime.image = engine_image(stack, spec, runtime.adapter)
    runtime.expected_load_seconds = load_times.expected(spec)
    if not runtime.adapter.managed:
        runtime.state = ModelState.READY
    planned = next((m for m in plan.models if m.name == name), None) if plan else None
    if planned is not None:
        runtime.decode_ceiling_tok_s = planned.decode_ceiling_tok_s
        runtime.planned_bytes = planned.total_bytes
    return runtime


def _retrieve(task: asyncio.Task[ModelRuntime]) -> None:
    """A wake whose waiters all left still has its outcome consumed (no warning)."""
    if not task.cancelled():
        task.exception()
