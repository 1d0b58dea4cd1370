"""`sparkstack up` as a Python API: gateway and supervisor on one event loop,
the run file written for other shells, and a bounded, reported shutdown on
SIGINT/SIGTERM that leaves no engine process behind."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal

import aiohttp
from aiohttp import web

from sparkstack.errors import SupervisorError
from sparkstack.gateway import build_app
from sparkstack.gateway.fastserver import GatewayServer
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


async def serve(stack: Stack, settings: Settings, plan: StackPlan | None = None) -> None:
    """Run the stack until SIGINT or SIGTERM."""
    existing = RunFile.read(settings.run_file)
    if existing and pid_alive(existing.pid):
        raise SupervisorError(
            f"a stack is already running (pid {existing.pid}, {existing.gateway_url}); "
            "run `sparkstack down` first"
        )
    raise_fd_limit()
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
        runner = await start_gateway(app, host, port)
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
        try:
            await stop.wait()
            log.info("shutting down")
        finally:
            for task in (starting, idle, guard):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.cleanup()
            await supervisor.stop_all()
            RunFile.remove(settings.run_file)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
