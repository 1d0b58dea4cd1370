"""An in-process gateway in front of in-process stub upstreams (faults only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port

StartStub = Callable[[web.Application], Awaitable[str]]
StartGateway = Callable[[str], Awaitable[str]]


@pytest.fixture
async def start_stub() -> AsyncIterator[StartStub]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def start_test_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start a gateway whose one model `stub` (alias `stub-alias`) is external at a URL."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(upstream_url: str) -> str:
        stack = load_stack_text(
            f"models:\n  stub:\n    engine: external\n    url: {upstream_url}/v1\n"
            "    model: upstream-name\n    aliases: [stub-alias]\n",
            "test stack",
        )
        session = aiohttp.ClientSession()
        supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)
        port = free_port()
        runner = await start_gateway(build_app(supervisor.models, session), "127.0.0.1", port)
        cleanups.extend([runner.cleanup, session.close])
        return f"http://127.0.0.1:{port}"

    yield start
    for cleanup in cleanups:
        await cleanup()
