"""An in-process gateway in front of in-process stub upstreams (faults only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.gateway.keys import KeyIndex, KeyStore
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port

StartStub = Callable[[web.Application], Awaitable[str]]
StartGateway = Callable[..., Awaitable[str]]


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
    """Start a gateway whose models `stub` (alias `stub-alias`) and `other` are external
    at a URL; ``gateway_yaml`` adds gateway settings, ``keys`` enables auth."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(upstream_url: str, gateway_yaml: str = "", keys: KeyStore | None = None) -> str:
        stack = load_stack_text(
            f"gateway: {{{gateway_yaml}}}\n"
            f"models:\n  stub:\n    engine: external\n    url: {upstream_url}/v1\n"
            "    model: upstream-name\n    aliases: [stub-alias]\n"
            f"  other:\n    engine: external\n    url: {upstream_url}\n",
            "test stack",
        )
        session = aiohttp.ClientSession()
        supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)
        port = free_port()
        index = KeyIndex(keys, check_interval=0.0) if keys else None
        app = build_app(supervisor.models, session, stack.gateway, index)
        runner = await start_gateway(app, "127.0.0.1", port)
        cleanups.extend([runner.cleanup, session.close])
        return f"http://127.0.0.1:{port}"

    yield start
    for cleanup in cleanups:
        await cleanup()
