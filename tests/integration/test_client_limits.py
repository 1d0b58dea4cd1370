"""Client-side limits (issue 17, point 2): 5,000 idle and half-sent connections
do not starve the gateway (a normal request still answers within 50 ms), and
the gateway closes them itself after its client timeouts; beyond
gateway.max_connections a new connection gets a clear 503."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.gateway.fastserver import GatewayServer
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port
from tests.integration.conftest import StartStub

log = logging.getLogger(__name__)
CONNECTIONS = 5000
TIMEOUT = 20.0
CHAT = b'{"model": "stub", "messages": [{"role": "user", "content": "hi"}]}'


def request(port: int, body: bytes = CHAT) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (port, len(body), body)
    )


@dataclass
class Gateway:
    port: int
    server: GatewayServer


StartGatewayServer = Callable[[str], Awaitable[Gateway]]


@pytest.fixture
async def gateway_with(start_stub: StartStub, tmp_path: Path) -> AsyncIterator[StartGatewayServer]:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    upstream = await start_stub(app)
    servers: list[GatewayServer] = []
    session = aiohttp.ClientSession()

    async def start(gateway_yaml: str) -> Gateway:
        stack = load_stack_text(
            f"gateway: {{{gateway_yaml}}}\nmodels:\n  stub:\n    engine: external\n"
            f"    url: {upstream}\n",
            "test stack",
        )
        supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)
        port = free_port()
        server = await start_gateway(
            build_app(supervisor.models, session, stack.gateway), "127.0.0.1", port
        )
        servers.append(server)
        return Gateway(port, server)

    yield start
    for server in servers:
        await server.cleanup()
    await session.close()


async def timed_request(port: int) -> float:
    """Seconds for one normal request on a fresh connection (connect included)."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request(port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        return time.perf_counter() - began
    finally:
        writer.close()


async def assert_all_closed_by_gateway(
    gateway: Gateway, readers: list[asyncio.StreamReader], quarter: int
) -> None:
    """Every connection ends from the gateway's side after its timeouts; the
    half-sent requests are told why (408), the idle ones just closed."""

    async def closed_by_gateway(reader: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(reader.read(), 2 * TIMEOUT + 10)

    answers = await asyncio.gather(*(closed_by_gateway(reader) for reader in readers))
    refused = [answer for answer in answers if answer]
    assert len(answers) == CONNECTIONS
    for answer in refused:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "request_timeout"
    assert len(refused) == 2 * quarter
    for _ in range(50):
        if gateway.server.open == 0:
            break
        await asyncio.sleep(0.1)
    assert gateway.server.open == 0


async def test_5000_idle_and_half_sent_connections_neither_starve_nor_stay(
    gateway_with: StartGatewayServer,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * CONNECTIONS + 500  # both ends live in this process
    if soft < needed:
        if hard < needed:
            pytest.skip(f"open-files hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    timeouts = (
        f"client_idle_timeout: {TIMEOUT}, client_header_timeout: {TIMEOUT}, "
        f"client_body_timeout: {TIMEOUT}"
    )
    gateway = await gateway_with(timeouts)
    port = gateway.port
    quarter = CONNECTIONS // 4
    partial = {
        "idle": b"",
        "half headers": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        "half body": request(port, CHAT + b" " * 100)[: -(100 + len(CHAT) // 2)],
    }
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def half_sent(data: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        clients.append((reader, writer))
        if data:
            writer.write(data)

    async def kept_alive() -> None:
        """A whole request answered, then nothing more on the connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        clients.append((reader, writer))
        writer.write(request(port))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)

    began = time.monotonic()
    try:
        for data in partial.values():
            for _ in range(0, quarter, 250):
                await asyncio.gather(*(half_sent(data) for _ in range(250)))
        for _ in range(0, CONNECTIONS - 3 * quarter, 250):
            await asyncio.gather(*(kept_alive() for _ in range(250)))
        log.info("%d connections opened in %.1f s", len(clients), time.monotonic() - began)
        await asyncio.sleep(0.2)
        assert gateway.server.open >= CONNECTIONS
        latencies = [await timed_request(port) for _ in range(9)]
        log.info(
            "normal request latency with %d open connections: median %.1f ms, max %.1f ms",
            gateway.server.open, statistics.median(latencies) * 1000, max(latencies) * 1000,
        )  # fmt: skip
        assert statistics.median(latencies) < 0.050
        assert time.monotonic() - began < TIMEOUT  # all of it ran before any timeout

        await assert_all_closed_by_gateway(gateway, [reader for reader, _ in clients], quarter)
        assert await timed_request(port) < 1.0
    finally:
        for _, writer in clients:
            writer.close()


async def test_connections_beyond_the_cap_get_a_503(
    gateway_with: StartGatewayServer,
) -> None:
    gateway = await gateway_with("max_connections: 20")
    port = gateway.port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    try:
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(port))
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "too_many_connections"
        assert "gateway.max_connections" in error["message"]
    finally:
        for _, held_writer in held:
            held_writer.close()
    for _ in range(50):
        if gateway.server.open == 0:
            break
        await asyncio.sleep(0.1)
    assert await timed_request(port) < 1.0
