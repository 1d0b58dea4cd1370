"""The lifecycle of one engine process: launch it from the adapter's LaunchSpec
with its own random key, wait until it serves, warm it up, record its footprint,
and watch it (exit and liveness) until it is stopped. It knows nothing of other
models, memory or policies: the supervisor decides, this module carries out."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

from sparkstack.containers.launch import engine_launch
from sparkstack.engines.base import ENGINE_KEY_ENV, LaunchSpec, MemoryEstimate
from sparkstack.errors import SparkstackError, SupervisorError
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack
from sparkstack.supervisor.engine_process import EngineProcess, engine_process
from sparkstack.supervisor.footprints import append_footprint, measure, warm_up
from sparkstack.supervisor.liveness import watch_liveness
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.process import ManagedProcess, describe_exit
from sparkstack.supervisor.readiness import wait_ready
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

log = logging.getLogger("sparkstack.supervisor")
SetState = Callable[[ModelRuntime, ModelState, str | None], None]
Note = Callable[[ModelRuntime, str], None]
OnCrash = Callable[[ModelRuntime, str], Awaitable[None]]
"""Called with the failure message once an engine that was ready has exited."""
FootprintPlan = Callable[[str], tuple[int, int]]
"""Model name -> (planned total bytes, planned KV tokens)."""


class EngineLifecycle:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        set_state: SetState,
        note: Note,
        on_crash: OnCrash,
        footprint_plan: FootprintPlan,
        on_spawn: Callable[[ModelRuntime], None] | None = None,
        stack: Stack | None = None,
        cuda: bool = False,
    ) -> None:
        self.stack = stack
        """Where runtime: container comes from (None: every engine native)."""
        self.cuda = cuda
        self.settings = settings
        self.session = session
        self.set_state = set_state
        self.note = note
        self.on_crash = on_crash
        self.footprint_plan = footprint_plan
        self.on_spawn = on_spawn
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._all: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._all.add(task)
        task.add_done_callback(self._all.discard)
        return task

    async def start(self, runtime: ModelRuntime, planned: MemoryEstimate | None) -> None:
        """Start ``runtime``'s engine and return once it is ready (state READY), or
        raise SupervisorError with the state FAILED (STOPPED when cancelled)."""
        name = runtime.name
        port = free_port()
        try:
            launch = (
                engine_launch(
                    self.stack, runtime.spec, runtime.adapter, port, self.settings, planned
                )  # fmt: skip
                if self.stack is not None
                else runtime.adapter.launch(runtime.spec, port, self.settings, planned)
            )
        except SparkstackError as exc:
            self.set_state(runtime, ModelState.FAILED, str(exc))
            raise
        process, headers = self._process(runtime, launch, port)
        runtime.port, runtime.process, runtime.hung_reason = port, process, None
        runtime.base_url = runtime.adapter.base_url(runtime.spec, port)
        self.set_state(runtime, ModelState.STARTING, None)
        log.info("starting %s (%s) on port %d; log: %s", name, runtime.spec.engine, port,
                 process.log_path)  # fmt: skip
        try:
            await process.start()
            if self.on_spawn:
                self.on_spawn(runtime)  # the run file learns the pid before ready
            runtime.ready_seconds = await wait_ready(
                self.session, runtime.base_url + launch.ready_path, process,
                runtime.spec.startup_timeout, headers,
            )  # fmt: skip
        except SparkstackError as exc:
            await process.stop(runtime.spec.stop_timeout)
            reason, runtime.abort_reason = runtime.abort_reason, None
            message = f"{reason}: {exc}" if reason else str(exc)
            self.set_state(runtime, ModelState.FAILED, message)
            raise SupervisorError(message) from exc
        except asyncio.CancelledError:
            await process.stop(runtime.spec.stop_timeout)
            self.set_state(runtime, ModelState.STOPPED, "start cancelled")
            raise
        warmup = await warm_up(self.session, runtime)
        runtime.last_used = runtime.ready_at = time.monotonic()
        self.set_state(runtime, ModelState.READY, None)
        log.info("%s is ready (%.1fs, warm-up %s)", name, runtime.ready_seconds,
                 f"{warmup:.2f}s" if warmup is not None else "not accepted")  # fmt: skip
        # measured off the wake's path: a waiting request must not pay for it
        self._spawn(self._record_footprint(runtime, warmup))
        live_url = runtime.base_url + (launch.live_path or launch.ready_path)

        async def report_hung(reason: str) -> None:
            self._kill_hung(runtime, process, reason)

        self._tasks[name] = [
            self._spawn(self._watch(runtime, process)),
            self._spawn(watch_liveness(runtime, self.session, live_url, headers, report_hung)),
        ]

    def _process(
        self, runtime: ModelRuntime, launch: LaunchSpec, port: int
    ) -> tuple[EngineProcess, dict[str, str]]:
        """The engine process, with a fresh random key in its environment (never in
        argv), and the headers that reach it."""
        env = dict(launch.env)
        headers: dict[str, str] = {}
        if runtime.adapter.internal_key_env:
            runtime.api_key = secrets.token_urlsafe(24)
            env[runtime.adapter.internal_key_env] = runtime.api_key
            env[ENGINE_KEY_ENV] = runtime.api_key
            headers["Authorization"] = f"Bearer {runtime.api_key}"
        log_path = self.settings.log_dir / f"{runtime.name}.log"
        if self.stack is None:
            return ManagedProcess(runtime.name, launch.argv, env, log_path), headers
        process = engine_process(self.stack, runtime.spec, runtime.adapter, launch, env, port,
                                 self.settings, self.cuda)  # fmt: skip
        return process, headers

    def _kill_hung(self, runtime: ModelRuntime, process: EngineProcess, reason: str) -> None:
        """The process lives but the engine does not serve: kill it; ``_watch`` then
        handles the exit as a crash."""
        if runtime.process is not process:
            return
        log.error("%s: %s; killing it", runtime.name, reason)
        runtime.hung_reason = reason
        self.note(runtime, "hung")
        process.kill()

    async def _watch(self, runtime: ModelRuntime, process: EngineProcess) -> None:
        """An engine that exits on its own (or was killed as hung) is failed."""
        returncode = await process.wait()
        if runtime.process is not process or runtime.state is not ModelState.READY:
            return
        if runtime.hung_reason:
            how = f"was {runtime.hung_reason} (killed)"
        else:
            how = describe_exit(returncode)
        message = f"engine {how}; see {process.log_path}"
        log.error("%s: %s", runtime.name, message)
        runtime.process = None
        self._tasks.pop(runtime.name, None)
        self.set_state(runtime, ModelState.FAILED, message)
        await self.on_crash(runtime, message)

    async def _record_footprint(self, runtime: ModelRuntime, warmup: float | None) -> None:
        total, kv_tokens = self.footprint_plan(runtime.name)
        row = await asyncio.to_thread(measure, runtime, total, kv_tokens, warmup)
        await asyncio.to_thread(append_footprint, self.settings.footprints_file, row)

    async def stop(self, runtime: ModelRuntime) -> str:
        """Stop the engine (SIGTERM, then SIGKILL after ``stop_timeout``); its watchers
        first, so the exit is not taken for a crash."""
        process = runtime.process
        if process is None or not runtime.adapter.managed:
            return "not running"
        for task in self._tasks.pop(runtime.name, []):
            if task is not asyncio.current_task():
                task.cancel()
        self.set_state(runtime, ModelState.STOPPING, None)
        outcome = await process.stop(runtime.spec.stop_timeout)
        runtime.process = None
        self.set_state(runtime, ModelState.STOPPED, None)
        log.info("stopped %s: %s", runtime.name, outcome)
        return outcome

    def cancel_watchers(self) -> None:
        """On shutdown: every watcher, liveness probe, restart wait and footprint."""
        for task in list(self._all):
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks.clear()
