"""The hot-path client to engines (gateway/upstream_fast.py) against engines that
answer oddly: silent past gateway.read_timeout (504), a close-delimited body (no
Content-Length, no chunks), a connection closed before any answer (502),
keep-alive reuse across many requests, a kept-alive connection the engine dropped
(sent again on a new one), and a slow reader holding the engine back."""

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


COMPLETION = b'{"object": "chat.completion", "choices": []}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n%b" % (len(COMPLETION), COMPLETION))  # fmt: skip
"""A kept-alive engine's whole answer to one chat request."""


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
        try:
            while True:
                await read_request(reader)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    gateway = await start_test_gateway(await raw_engine(keep_alive))
    async with aiohttp.ClientSession() as client:
        for _ in range(50):
            async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                await response.read()
    assert connections == 1


async def test_a_kept_alive_connection_the_engine_dropped_is_retried_on_a_new_one(
    raw_engine: Callable[[RawHandler], Awaitable[str]], start_test_gateway: StartGateway
) -> None:
    """An engine that closes a kept-alive connection when the next request comes
    (as servers do after their idle timeout): the request goes again on a fresh
    connection, the client never sees it."""
    connections = 0

    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(ANSWER)
        await writer.drain()
        await read_request(reader)  # the next request on this connection: dropped
        writer.close()

    gateway = await start_test_gateway(await raw_engine(one_per_connection))
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                assert await response.read() == COMPLETION
    assert connections == 3


async def test_a_slow_reader_pauses_the_engine_and_gets_the_whole_stream(
    raw_engine: Callable[[RawHandler], Awaitable[str]], start_test_gateway: StartGateway
) -> None:
    """32 MiB of events to a client that waits a second before reading: the gateway
    stops reading the engine meanwhile (it does not buffer the stream), then relays
    every byte."""
    event = b"data: " + b"x" * 4090 + b"\n\n"
    count = 32 * 256
    wrote_all_at: list[float] = []

    async def fast_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for _ in range(count):
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n"))
        await writer.drain()
        wrote_all_at.append(time.monotonic())
        writer.close()

    gateway = await start_test_gateway(await raw_engine(fast_stream))
    async with aiohttp.ClientSession() as client:
        async with client.post(
            gateway + "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as response:
            assert response.status == 200
            await asyncio.sleep(1.0)
            reading_from = time.monotonic()
            assert not wrote_all_at  # the engine is held back while nobody reads
            received = 0
            tail = b""
            async for chunk in response.content.iter_any():
                received += len(chunk)
                tail = (tail + chunk)[-64:]
    assert received == count * len(event) + len(b"data: [DONE]\n\n")
    assert tail.endswith(b"data: [DONE]\n\n")
    assert wrote_all_at and wrote_all_at[0] > reading_from
