"""The gateway relays streams without buffering, and ends a stream whose
upstream dies with an in-band error event (issue 2, point 4)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from aiohttp import web

from tests.integration.conftest import StartGateway, StartStub

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def sse(data: object) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def test_first_chunk_arrives_before_upstream_writes_the_last(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    client_has_first = asyncio.Event()
    wrote_last_after_client_had_first: list[bool] = []

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse({"choices": [{"delta": {"content": "first"}}]}))
        try:
            # A buffering proxy would hold "first" back, so this wait would time out.
            await asyncio.wait_for(client_has_first.wait(), timeout=10)
            wrote_last_after_client_had_first.append(True)
        except TimeoutError:
            wrote_last_after_client_had_first.append(False)
        await response.write(sse({"choices": [{"delta": {"content": "last"}}]}))
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", slow_stream)
    gateway = await start_test_gateway(await start_stub(app))

    received: list[bytes] = []
    async with aiohttp.ClientSession() as client:
        async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for chunk in response.content.iter_any():
                received.append(chunk)
                if b"first" in chunk:
                    client_has_first.set()
    assert wrote_last_after_client_had_first == [True]
    body = b"".join(received)
    assert body.index(b"first") < body.index(b"last") < body.index(b"[DONE]")


async def test_upstream_death_mid_stream_gives_an_error_event(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    async def dying_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(sse({"choices": [{"delta": {"content": "partial"}}]}))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()  # the engine process dies
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", dying_stream)
    gateway = await start_test_gateway(await start_stub(app))

    started = time.perf_counter()
    async with aiohttp.ClientSession() as client:
        async with client.post(gateway + "/v1/chat/completions", json=CHAT) as response:
            body = await response.read()
    elapsed = time.perf_counter() - started
    events = [e for e in body.split(b"\n\n") if e]
    assert b"partial" in events[0]
    error = json.loads(events[-2].removeprefix(b"data: "))
    assert error["error"]["type"] == "upstream_error"
    assert "stopped in the middle of the stream" in error["error"]["message"]
    assert events[-1] == b"data: [DONE]"
    assert elapsed < 1.0


async def test_alias_is_renamed_and_other_fields_pass_untouched(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    seen: list[dict[str, object]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    gateway = await start_test_gateway(await start_stub(app))
    body = {"model": "stub-alias", "messages": [], "custom_field": {"x": [1, 2]}, "top_k": 3}
    async with aiohttp.ClientSession() as client:
        async with client.post(gateway + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
    assert seen == [{**body, "model": "upstream-name"}]


async def test_client_disconnect_aborts_the_upstream_request(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    """Issue 5, point 3: the stub sees its connection go within a second."""
    upstream_saw_disconnect: list[float] = []

    async def endless_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse({"choices": [{"delta": {"content": "first"}}]}))
        try:
            for _ in range(400):
                await asyncio.sleep(0.05)
                await response.write(b": still generating\n\n")
        except ConnectionResetError:
            upstream_saw_disconnect.append(time.perf_counter())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless_stream)
    gateway = await start_test_gateway(await start_stub(app))
    async with aiohttp.ClientSession() as client:
        response = await client.post(gateway + "/v1/chat/completions", json=CHAT)
        first = await response.content.readany()
        assert b"first" in first
        response.close()  # the client goes away mid-stream
        gone = time.perf_counter()
    for _ in range(40):
        if upstream_saw_disconnect:
            break
        await asyncio.sleep(0.05)
    assert upstream_saw_disconnect, "the upstream request was not aborted"
    assert upstream_saw_disconnect[0] - gone < 1.0
