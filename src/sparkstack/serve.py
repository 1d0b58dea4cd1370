"""`sparkstack up` as a Python API: gateway and supervisor on one event loop,
the run file written for other shells, and a bounded, reported shutdown on
SIGINT/SIGTERM that leaves no engine process behind."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal

import aiohttp
from aiohttp import web

from sparkstack.cluster.head import fail_spanning, start_cluster
from sparkstack.errors import SparkstackError, SupervisorError
from sparkstack.gateway import build_app
from sparkstack.gateway.keys import KeyIndex, KeyStore
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.planner.machine import probe
from sparkstack.planner.plan import StackPlan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack
from sparkstack.supervisor import ModelRuntime, Supervisor
from sparkstack.supervisor.process import pid_alive
from sparkstack.supervisor.run_file import RunFile
from sparkstack.supervisor.watchdog import MemoryWatchdog, sampler_for

log = logging.getLogger("sparkstack")


def install_uvloop() -> None:
    """Use uvloop where it is installed; the stdlib loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def start_gateway(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise SupervisorError(
                f"{host}:{port} is already in use; stop what listens there (`sparkstack "
                "down` if it is another stack) or pick another gateway.listen / --listen"
            ) from exc
        raise SupervisorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return runner


async def serve(stack: Stack, settings: Settings, plan: StackPlan | None = None) -> None:
    """Run the stack until SIGINT or SIGTERM."""
    existing = RunFile.read(settings.run_file)
    if existing and pid_alive(existing.pid):
        raise SupervisorError(
            f"a stack is already running (pid {existing.pid}, {existing.gateway_url}); "
            "run `sparkstack down` first"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    keys = KeyIndex(KeyStore(settings.keys_file))
    if not stack.gateway.is_loopback and not keys.enabled:
        raise SupervisorError(
            f"gateway.listen {stack.gateway.listen} reaches beyond this machine, and no API "
            "key exists: every model would be open to the network. Create one with "
            "`sparkstack keys create NAME` (or listen on 127.0.0.1)"
        )
    metrics = GatewayMetrics()
    host, port = stack.gateway.host, stack.gateway.port
    gateway_url = f"http://{host}:{port}"
    run_file = RunFile(pid=os.getpid(), gateway_url=gateway_url)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        def record(runtime: ModelRuntime) -> None:
            metrics.event(runtime.name, runtime.state.value)
            if runtime.pid is not None:
                run_file.engines[runtime.name] = runtime.pid
            run_file.write(settings.run_file)

        supervisor = Supervisor(
            stack, settings, session, on_change=record, plan=plan,
            on_event=lambda runtime, event: metrics.event(runtime.name, event),
        )  # fmt: skip
        app = build_app(
            supervisor.models, session, stack.gateway, keys, metrics, supervisor.wake,
            supervisor.control,
        )  # fmt: skip
        ray_head = await start_cluster(stack, settings)
        try:
            runner = await start_gateway(app, host, port)
        except SparkstackError:
            if ray_head is not None:
                await ray_head.stop()
            raise
        run_file.write(settings.run_file)
        log.info("gateway listening on %s (models: %s)", gateway_url, ", ".join(stack.models))
        starting = asyncio.create_task(supervisor.start_all())
        idle = asyncio.create_task(supervisor.idle_loop())
        watchdog = MemoryWatchdog(
            supervisor,
            floor_bytes=int(stack.host_reserve_gib * 2**30),
            sample=sampler_for(plan.machine_profile() if plan else probe()),
            on_sample=lambda available, floor: metrics.host.update(
                memory_available_bytes=available, memory_floor_bytes=floor
            ),
        )
        guard = asyncio.create_task(watchdog.run())
        tasks = [starting, idle, guard]
        if ray_head is not None:
            tasks.append(asyncio.create_task(ray_head.watch(fail_spanning(supervisor))))
        try:
            await stop.wait()
            log.info("shutting down")
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.cleanup()
            await supervisor.stop_all()
            if ray_head is not None:
                log.info("stopped Ray head: %s", await ray_head.stop())
            RunFile.remove(settings.run_file)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
