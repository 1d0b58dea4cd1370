"""The supervisor: starts the stack's engines in order (largest first, each
ready before the next), watches them, and stops them all on shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

import aiohttp

from sparkstack.containers.launch import engine_image, engine_launch
from sparkstack.engines.base import ENGINE_KEY_ENV, MemoryEstimate
from sparkstack.engines.registry import get_engine
from sparkstack.errors import SparkstackError, SupervisorError
from sparkstack.planner.plan import StackPlan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Policy, Stack
from sparkstack.supervisor.engine_process import EngineProcess, engine_process
from sparkstack.supervisor.footprints import append_footprint, measure, warm_up
from sparkstack.supervisor.liveness import watch_liveness
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.process import describe_exit
from sparkstack.supervisor.readiness import wait_ready
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

log = logging.getLogger("sparkstack.supervisor")

ChangeListener = Callable[[ModelRuntime], None]
EventListener = Callable[[ModelRuntime, str], None]
MAX_RESTARTS = 5
STABLE_SECONDS = 60.0
"""An engine that served this long before crashing gets a fresh restart budget."""


class Supervisor:
    def __init__(
        self,
        stack: Stack,
        settings: Settings,
        session: aiohttp.ClientSession,
        on_change: ChangeListener | None = None,
        plan: StackPlan | None = None,
        on_event: EventListener | None = None,
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.session = session
        self.on_change = on_change
        self.plan = plan
        self.on_event = on_event
        self.models: dict[str, ModelRuntime] = {
            name: ModelRuntime(spec=spec, adapter=get_engine(spec.engine))
            for name, spec in stack.models.items()
        }
        for name, runtime in self.models.items():
            runtime.image = engine_image(stack, runtime.spec, runtime.adapter)
            if not runtime.adapter.managed:
                runtime.state = ModelState.READY
            planned = next((m for m in plan.models if m.name == name), None) if plan else None
            if planned is not None:
                runtime.decode_ceiling_tok_s = planned.decode_ceiling_tok_s
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._liveness: dict[str, asyncio.Task[None]] = {}
        self._waking: dict[str, asyncio.Task[ModelRuntime]] = {}
        self._closing = False
        self.admitting: str | None = None
        """Why no model may start now (the memory watchdog sets it), or None."""
        self._room = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._locks = {name: asyncio.Lock() for name in self.models}

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

    async def start(self, name: str) -> ModelRuntime:
        runtime = self.models[name]
        async with self._locks[name]:
            if runtime.state is ModelState.READY:
                return runtime
            port = free_port()
            try:
                launch = engine_launch(self.stack, runtime.spec, runtime.adapter, port,
                                       self.settings, self._planned(name))  # fmt: skip
            except SparkstackError as exc:
                self._set(runtime, ModelState.FAILED, str(exc))
                raise
            env = dict(launch.env)
            probe_headers: dict[str, str] = {}
            if runtime.adapter.internal_key_env:
                runtime.api_key = secrets.token_urlsafe(24)
                env[runtime.adapter.internal_key_env] = runtime.api_key
                env[ENGINE_KEY_ENV] = runtime.api_key
                probe_headers["Authorization"] = f"Bearer {runtime.api_key}"
            cuda = self.plan is not None and self.plan.machine.device == "cuda"
            process = engine_process(self.stack, runtime.spec, runtime.adapter, launch, env, port,
                                     self.settings, cuda)  # fmt: skip
            runtime.port, runtime.process = port, process
            runtime.hung_reason = None
            runtime.base_url = runtime.adapter.base_url(runtime.spec, port)
            self._set(runtime, ModelState.STARTING)
            log.info(
                "starting %s (%s) on port %d; log: %s",
                name,
                runtime.spec.engine,
                port,
                process.log_path,
            )
            try:
                await process.start()
                if self.on_change:
                    self.on_change(runtime)  # the run file learns the pid before ready
                runtime.ready_seconds = await wait_ready(
                    self.session,
                    runtime.base_url + launch.ready_path,
                    process,
                    runtime.spec.startup_timeout,
                    probe_headers,
                )
            except SparkstackError as exc:
                await process.stop(runtime.spec.stop_timeout)
                reason, runtime.abort_reason = runtime.abort_reason, None
                message = f"{reason}: {exc}" if reason else str(exc)
                self._set(runtime, ModelState.FAILED, message)
                raise SupervisorError(message) from exc
            except asyncio.CancelledError:
                await process.stop(runtime.spec.stop_timeout)
                self._set(runtime, ModelState.STOPPED, "start cancelled")
                raise
            warmup = await warm_up(self.session, runtime)
            runtime.last_used = runtime.ready_at = time.monotonic()
            self._set(runtime, ModelState.READY)
            log.info("%s is ready (%.1fs, warm-up %s)", name, runtime.ready_seconds,
                     f"{warmup:.2f}s" if warmup is not None else "not accepted")  # fmt: skip
            # measured off the wake's path: a waiting request must not pay for it
            footprint = asyncio.create_task(self._record_footprint(runtime, warmup))
            self._background.add(footprint)
            footprint.add_done_callback(self._background.discard)
            self._watchers[name] = asyncio.create_task(self._watch(runtime, process))
            live_url = runtime.base_url + (launch.live_path or launch.ready_path)

            async def report_hung(reason: str) -> None:
                self._kill_hung(runtime, process, reason)

            self._liveness[name] = asyncio.create_task(
                watch_liveness(runtime, self.session, live_url, probe_headers, report_hung)
            )
            return runtime

    def _kill_hung(self, runtime: ModelRuntime, process: EngineProcess, reason: str) -> None:
        """The process lives but the engine does not serve: kill it; ``_watch`` then
        handles the exit as a crash (failed, restarted per policy)."""
        if runtime.process is not process:
            return
        log.error("%s: %s; killing it", runtime.name, reason)
        runtime.hung_reason = reason
        self._set_event(runtime, "hung")
        process.kill()

    async def _record_footprint(self, runtime: ModelRuntime, warmup: float | None) -> None:
        planned = self.plan.model(runtime.name) if self.plan else None
        row = await asyncio.to_thread(
            measure, runtime, planned.total_bytes if planned else 0,
            planned.kv_tokens if planned else 0, warmup,
        )  # fmt: skip
        await asyncio.to_thread(append_footprint, self.settings.footprints_file, row)

    def _planned(self, name: str) -> MemoryEstimate | None:
        if self.plan is None:
            return None
        model = self.plan.model(name)
        return model.estimate() if model.engine_args or model.engine_env else None

    async def wake(self, name: str) -> ModelRuntime:
        """Start a stopped or failed model; concurrent callers share one start."""
        runtime = self.models[name]
        if runtime.state is ModelState.READY:
            return runtime
        if self._closing:
            raise SupervisorError(f"{name}: the stack is shutting down")
        if self.admitting is not None:
            raise SupervisorError(f"{name} is not started: {self.admitting}")
        task = self._waking.get(name)
        if task is None or task.done():
            task = self._waking[name] = asyncio.create_task(self._fit_and_start(name))
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _fit_and_start(self, name: str) -> ModelRuntime:
        """One wake at a time: make room (evicting idle on-demand models, least
        recently used first), then start; the next wake sees the new resident set."""
        async with self._room:
            await self._make_room(name)
            runtime = self.models[name]
            if runtime.state is ModelState.SLEEPING:
                if await self._wake_from_sleep(runtime):
                    return runtime
                await self.stop(name)  # a failed wake-up: start it afresh
            return await self.start(name)

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

    def sleep_level(self) -> int:
        """Level 1 keeps the weights in host memory: on a unified-memory machine that
        is the same pool and frees only the KV cache, so sleep there is level 2."""
        return 2 if self.plan is None or self.plan.machine.unified else 1

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

    async def _make_room(self, name: str) -> None:
        if self.plan is None:
            return
        model = self.plan.model(name)
        need = model.total_bytes + model.spike_bytes - self.held_bytes(self.models[name])
        budget = self.plan.machine.budget_bytes
        while self.resident_bytes() + need > budget:
            idle = [rt for rt in self.models.values() if rt.name != name and self.evictable(rt)]
            if not idle:
                raise SupervisorError(self._no_room(name, need, budget))
            victim = min(idle, key=lambda rt: rt.last_used)
            log.info("evicting %s (least recently used) to make room for %s", victim.name, name)
            self._set_event(victim, "evicted")
            await self.stop(victim.name)

    @staticmethod
    def evictable(runtime: ModelRuntime) -> bool:
        """An on-demand model that holds memory and serves nobody: may be put away."""
        return (
            runtime.spec.policy is Policy.ON_DEMAND
            and runtime.state in (ModelState.READY, ModelState.SLEEPING)
            and runtime.inflight == 0
            and runtime.waiting == 0
        )

    async def abort_start(self, name: str, reason: str) -> None:
        """Kill a model that is still starting; its start fails with ``reason``."""
        runtime = self.models[name]
        if runtime.state is ModelState.STARTING and runtime.process is not None:
            runtime.abort_reason = reason
            await runtime.process.stop(runtime.spec.stop_timeout)

    def _no_room(self, name: str, need: int, budget: int) -> str:
        holders = []
        for rt in self.models.values():
            held = self.held_bytes(rt)
            if rt.name != name and held:
                why = "always on" if rt.spec.policy is Policy.ALWAYS_ON else (
                    "in use" if rt.inflight or rt.waiting else rt.state.value
                )  # fmt: skip
                holders.append(f"{rt.name} {held / 2**30:.2f} GiB ({why})")
        free = budget - self.resident_bytes()
        return (
            f"{name} needs {need / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB of the "
            f"{budget / 2**30:.2f} GiB budget are free; held by: {', '.join(holders) or 'nothing'}"
        )

    async def control(self, name: str, action: str) -> str:
        """The admin API's actions: load (start, making room), unload (stop), and
        sleep / wake (engines with a sleep mode; others are stopped / started)."""
        if action in ("load", "wake"):
            await self.wake(name)
            return "ready"
        if action == "sleep":
            return await self.put_away(name)
        if action == "unload":
            return await self.stop(name)
        raise SupervisorError(f"unknown action {action!r}; use load, unload, sleep or wake")

    async def put_away(self, name: str) -> str:
        """Idle handling: sleep where the engine was started with a sleep mode,
        otherwise stop."""
        runtime = self.models[name]
        planned = self._planned(name)
        can_sleep = (
            runtime.adapter.supports_sleep
            and planned is not None
            and "--enable-sleep-mode" in planned.engine_args
        )
        if runtime.state is not ModelState.READY or not can_sleep:
            return await self.stop(name)
        level = self.sleep_level()
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
        """Stop on-demand models idle past their idle_timeout with nothing in flight."""
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for runtime in list(self.models.values()):
                spec = runtime.spec
                if (
                    spec.policy is Policy.ON_DEMAND
                    and runtime.state is ModelState.READY
                    and runtime.inflight == 0
                    and runtime.waiting == 0
                    and now - runtime.last_used > spec.idle_timeout
                ):
                    log.info("%s idle for %.0fs: putting it away", runtime.name, spec.idle_timeout)
                    self._set_event(runtime, "idle")
                    await self.put_away(runtime.name)

    async def _watch(self, runtime: ModelRuntime, process: EngineProcess) -> None:
        """An engine that exits on its own is failed; an always-on one is restarted
        with exponential back-off (1, 2, 4, ... s) up to ``MAX_RESTARTS`` in a row."""
        returncode = await process.wait()
        if runtime.process is not process or runtime.state is not ModelState.READY:
            return
        how = (
            f"was {runtime.hung_reason} (killed)"
            if runtime.hung_reason
            else describe_exit(returncode)
        )
        message = f"engine {how}; see {process.log_path}"
        log.error("%s: %s", runtime.name, message)
        runtime.process = None
        self._set(runtime, ModelState.FAILED, message)
        if runtime.spec.policy is not Policy.ALWAYS_ON:
            return  # the next request wakes it
        stable = time.monotonic() - runtime.ready_at > STABLE_SECONDS
        runtime.restarts = 0 if stable else runtime.restarts
        while runtime.restarts < MAX_RESTARTS and runtime.failed:
            delay = 2.0**runtime.restarts
            runtime.restarts += 1
            log.info("restarting %s in %.0fs (attempt %d of %d)", runtime.name, delay,
                     runtime.restarts, MAX_RESTARTS)  # fmt: skip
            await asyncio.sleep(delay)
            if not runtime.failed:
                return  # a request woke it meanwhile, or it was unloaded
            try:
                await self.wake(runtime.name)
                return
            except SparkstackError as exc:
                log.error("%s: restart failed: %s", runtime.name, exc)
        if runtime.failed:
            runtime.error = f"{message}; gave up after {MAX_RESTARTS} restarts"

    async def stop(self, name: str) -> str:
        runtime = self.models[name]
        process = runtime.process
        if process is None or not runtime.adapter.managed:
            return "not running"
        for tasks in (self._watchers, self._liveness):
            task = tasks.pop(name, None)
            if task:
                task.cancel()
        self._set(runtime, ModelState.STOPPING)
        outcome = await process.stop(runtime.spec.stop_timeout)
        runtime.process = None
        self._set(runtime, ModelState.STOPPED)
        log.info("stopped %s: %s", name, outcome)
        return outcome

    async def stop_all(self) -> dict[str, str]:
        self._closing = True
        tasks = [*self._watchers.values(), *self._liveness.values(), *self._waking.values()]
        for task in tasks:
            task.cancel()
        names = [rt.name for rt in self.models.values() if rt.process is not None]
        outcomes = await asyncio.gather(*(self.stop(name) for name in names))
        return dict(zip(names, outcomes, strict=True))

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


def _retrieve(task: asyncio.Task[ModelRuntime]) -> None:
    """A wake whose waiters all left still has its outcome consumed (no warning)."""
    if not task.cancelled():
        task.exception()
