"""`sparkstack up` as a Python API: gateway and supervisor on one event loop,
the run file written for other shells, hot reload of the stack file (SIGHUP,
``--watch``, POST /admin/reload; supervisor/reload.py does the work), and a
bounded, reported shutdown on SIGINT/SIGTERM that leaves no engine process
behind."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sparkstack.cluster.head import RayHead, fail_spanning, start_cluster
from sparkstack.cluster.node_monitor import NodeMonitor
from sparkstack.errors import SupervisorError
from sparkstack.gateway import build_app
from sparkstack.gateway.app import FORWARDER_KEY
from sparkstack.gateway.fastserver import GatewayServer
from sparkstack.gateway.keys import KeyIndex, KeyStore
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.reload import models_changed
from sparkstack.machine import host_reserve_bytes, probe
from sparkstack.planner.plan import StackPlan, build_plan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack
from sparkstack.stack.watch import watch_file
from sparkstack.supervisor import ModelRuntime, Supervisor
from sparkstack.supervisor.reload import Reloader, StackSource
from sparkstack.supervisor.run_file import (
    ProcessIdentity,
    RayHeadRecord,
    RunFile,
    kill_left_behind,
)
from sparkstack.supervisor.watchdog import MemoryWatchdog, sampler_for
from sparkstack.telemetry.hub import Telemetry

log = logging.getLogger("sparkstack")


def install_uvloop() -> None:
    """Use uvloop where it is installed; the stdlib loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def raise_fd_limit() -> None:
    """Let the gateway hold as many client connections as gateway.max_connections
    allows: the soft open-files limit (often 1024) goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def start_gateway(app: web.Application, host: str, port: int) -> GatewayServer:
    server = GatewayServer(app)
    try:
        await server.start(host, port, backlog=1024)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SupervisorError(
                f"{host}:{port} is already in use; stop what listens there (`sparkstack "
                "down` if it is another stack) or pick another gateway.listen / --listen"
            ) from exc
        raise SupervisorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return server


def claim_run_file(settings: Settings) -> None:
    """Refuse to start beside a running stack; clean up after a dead one (engines it
    left are killed only when their start time and executable still match)."""
    existing = RunFile.read(settings.run_file)
    if existing is None:
        return
    if existing.up.process() is not None:
        raise SupervisorError(
            f"a stack is already running (pid {existing.pid}, {existing.gateway_url}); "
            "run `sparkstack down` first"
        )
    for name in kill_left_behind(existing):
        log.warning("killed leftover processes of %s from a stack that died", name)
    RunFile.remove(settings.run_file)


class BackgroundTasks:
    """The long-running tasks of `up`. The first one that fails stops the stack: it
    is reported, and shutdown still stops every engine and removes the run file."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failure: str | None = None

    def spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=name)
        self.tasks[name] = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.failure is None:
            self.failure = f"{task.get_name()} failed: {exc!r}"
            log.error("%s; stopping the stack", self.failure, exc_info=exc)
            self.stop.set()

    async def cancel_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def serve(
    stack: Stack,
    settings: Settings,
    plan: StackPlan | None = None,
    source: StackSource | None = None,
    watch: Path | None = None,
) -> None:
    """Run the stack until SIGINT or SIGTERM (or until a background task fails: then
    SupervisorError, after the same full cleanup). ``source`` reads the stack file
    again for a reload (SIGHUP, POST /admin/reload); ``watch``: reload whenever this
    file changes."""
    claim_run_file(settings)
    raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _serve(stack, settings, plan, stop, source, watch)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


class Recorder:
    """Where lifecycle news goes: the gateway's metrics, the telemetry document and
    the run file (each engine's identity, so `down` finds it from another shell)."""

    def __init__(self, metrics: GatewayMetrics, run_file: RunFile, settings: Settings) -> None:
        self.metrics = metrics
        self.run_file = run_file
        self.settings = settings
        self.telemetry: Telemetry | None = None

    def state_changed(self, runtime: ModelRuntime) -> None:
        self.metrics.event(runtime.name, runtime.state.value)
        if self.telemetry is not None:
            self.telemetry.state_changed(runtime)
        self.spawned(runtime)

    def spawned(self, runtime: ModelRuntime) -> None:
        engines = self.run_file.engines
        known = engines.get(runtime.name)
        if runtime.pid is None:
            engines.pop(runtime.name, None)
        elif known is None or known.pid != runtime.pid:
            identity = ProcessIdentity.of(runtime.pid)
            if identity is not None:
                engines[runtime.name] = identity
        self.run_file.write(self.settings.run_file)

    def ray_head_started(self, head: RayHead) -> None:
        pid = head.process.pid
        identity = ProcessIdentity.of(pid) if pid is not None else None
        if identity is not None:
            self.run_file.ray_head = RayHeadRecord(identity, str(head.temp_dir))
            self.run_file.write(self.settings.run_file)

    def event(self, runtime: ModelRuntime, event: str) -> None:
        self.metrics.event(runtime.name, event)
        if self.telemetry is not None:
            self.telemetry.event(runtime, event)

    def note(self, model: str, event: str, detail: str | None) -> None:
        """A reload's events (also for models no runtime stands for any more)."""
        self.metrics.event(model, event)
        if self.telemetry is not None:
            self.telemetry.events.add(model, event, detail)


def open_keys(stack: Stack, settings: Settings) -> KeyIndex:
    """The key index; refuses to listen beyond loopback without a valid key file."""
    keys = KeyIndex(KeyStore(settings.keys_file), required=not stack.gateway.is_loopback)
    if keys.problem and not stack.gateway.is_loopback:
        raise SupervisorError(
            f"gateway.listen {stack.gateway.listen} reaches beyond this machine, and "
            f"{keys.problem}: every model would be open to the network. Create a key with "
            "`sparkstack keys create NAME` (or listen on 127.0.0.1)"
        )
    return keys


async def _serve(
    stack: Stack,
    settings: Settings,
    plan: StackPlan | None,
    stop: asyncio.Event,
    source: StackSource | None,
    watch: Path | None,
) -> None:
    keys = open_keys(stack, settings)
    metrics = GatewayMetrics()
    host, port = stack.gateway.host, stack.gateway.port
    gateway_url = f"http://{host}:{port}"
    me = ProcessIdentity.of(os.getpid())
    assert me is not None
    run_file = RunFile(up=me, gateway_url=gateway_url)
    recorder = Recorder(metrics, run_file, settings)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        supervisor = Supervisor(
            stack, settings, session, on_change=recorder.state_changed, plan=plan,
            on_event=recorder.event, on_spawn=recorder.spawned,
        )  # fmt: skip
        telemetry = Telemetry(supervisor.models, plan=plan, held=supervisor.held_bytes)
        recorder.telemetry = telemetry
        reloader = Reloader(supervisor, source, build_plan if plan else None, lambda: None,
                            recorder.note)  # fmt: skip
        app = build_app(
            supervisor.models, session, stack.gateway, keys, metrics, supervisor.wake,
            supervisor.control, telemetry, reloader.reload, settings,
        )  # fmt: skip

        def follow_reload() -> None:
            models_changed(app[FORWARDER_KEY])
            telemetry.plan = supervisor.plan

        reloader.on_models = follow_reload
        ray_head: RayHead | None = None
        try:
            ray_head = await start_cluster(stack, settings, recorder.ray_head_started)
            runner = await start_gateway(app, host, port)
        except BaseException:
            if ray_head is not None:
                await ray_head.stop()
            RunFile.remove(settings.run_file)  # written once the head started
            raise
        background = BackgroundTasks(stop)
        try:
            run_file.write(settings.run_file)
            log.info("gateway listening on %s (models: %s)", gateway_url, ", ".join(stack.models))
            watchdog = MemoryWatchdog(
                supervisor,
                floor_bytes=plan.machine.reserve_bytes
                if plan
                else host_reserve_bytes(stack.host_reserve_gib, probe().total_bytes),
                sample=sampler_for(plan.machine_profile() if plan else probe()),
                on_sample=lambda available, floor: metrics.host.update(
                    memory_available_bytes=available, memory_floor_bytes=floor
                ),
            )
            telemetry.watchdog = watchdog
            background.spawn("start", supervisor.start_all())
            background.spawn("idle loop", supervisor.idle_loop())
            background.spawn("memory watchdog", watchdog.run())
            if ray_head is not None:
                monitor = NodeMonitor(stack, settings)
                telemetry.nodes = monitor.nodes
                background.spawn("cluster nodes", monitor.run())
                fail = fail_spanning(supervisor)

                async def node_changed(node: str, why: str | None) -> None:
                    monitor.mark(node, why)
                    await fail(node, why)

                background.spawn("cluster watch", ray_head.watch(node_changed))
            background.spawn("reload", reloader.run())
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.request, "SIGHUP")
            if watch is not None:
                changed = functools.partial(reloader.request, f"{watch.name} changed")
                background.spawn("stack file watch", watch_file(watch, changed))
            await stop.wait()
            log.info("shutting down")
        finally:
            await _shut_down(background, runner, supervisor, settings, ray_head)
        if background.failure:
            raise SupervisorError(
                f"the stack stopped because {background.failure}; every engine was stopped "
                "(see the log above)"
            )


async def _shut_down(
    background: BackgroundTasks,
    runner: GatewayServer,
    supervisor: Supervisor,
    settings: Settings,
    ray_head: RayHead | None,
) -> None:
    """Every step runs even when one before it fails; failures are reported. The run
    file goes last, so a `down` after a kill midway still finds what is left."""
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("background tasks", background.cancel_all),
        ("gateway", runner.cleanup),
        ("engines", supervisor.stop_all),
    ]
    if ray_head is not None:

        async def stop_head() -> None:
            log.info("stopped Ray head: %s", await ray_head.stop())

        steps.append(("Ray head", stop_head))
    for what, step in steps:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001  (the next steps must still run)
            log.error("shutdown: stopping the %s failed: %r", what, exc)
    RunFile.remove(settings.run_file)
