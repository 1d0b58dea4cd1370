"""The hot-path client to engines (gateway/upstream_fast.py) against engines that
answer oddly: silent past gateway.read_timeout (504), a close-delimited body (no
Content-Length, no chunks), a connection closed before any answer (502), and
keep-alive reuse across many requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from sparkstack.supervisor.ports import free_port
from tests.integration.conftest import StartGateway, StartStub

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_engine() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> str:
        port = free_port()
        servers.append(await asyncio.start_server(handler, "127.0.0.1", port))
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)


async def test_engine_silent_past_read_timeout_is_504(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(4)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", silent)
    gateway = await start_test_gateway(await start_stub(app), "read_timeout: 1s")
    began = time.monotonic()
    async with aiohttp.ClientSession() as client:
        async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
            assert response.status == 504
            assert (await response.json())["error"]["type"] == "upstream_error"
    assert time.monotonic() - began < 3.5


async def test_close_delimited_body_and_early_close(
    raw_engine: Callable[[RawHandler], Awaitable[str]], start_test_gateway: StartGateway
) -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": ')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"true}")
        writer.close()

    gateway = await start_test_gateway(await raw_engine(close_delimited))
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                assert await response.json() == {"ok": True}

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    gateway = await start_test_gateway(await raw_engine(hang_up))
    async with aiohttp.ClientSession() as client:
        async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
            assert response.status == 502
            assert "not reachable" in (await response.json())["error"]["message"]


async def test_keep_alive_connections_are_reused(
    raw_engine: Callable[[RawHandler], Awaitable[str]], start_test_gateway: StartGateway
) -> None:
    connections = 0

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        body = b'{"object": "chat.completion", "choices": []}'
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%b" % (len(body), body))  # fmt: skip
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    gateway = await start_test_gateway(await raw_engine(keep_alive))
    async with aiohttp.ClientSession() as client:
        for _ in range(50):
            async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                await response.read()
    assert connections == 1
