"""An open loopback gateway (no keys) is not open to the web pages a user visits
(issue 17, point 4): a forged Host (DNS rebinding) and a foreign Origin are
refused, and their POST /admin/models/NAME/unload changes nothing; the CLI, the
openai client, same-origin pages and origins in gateway.cors_origins work."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.run_file import ProcessIdentity, RunFile
from sparkstack.supervisor.runtime import ModelState
from tests.integration.conftest import StartStub

ALLOWED = "http://localhost:3000"


async def engine() -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if not payload.get("stream"):
            return web.json_response({
                "id": "c1", "object": "chat.completion", "created": 1, "model": "stub",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hello"}}],
            })  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ("hel", "lo"):
            await response.write(
                b'data: {"id": "c1", "object": "chat.completion.chunk", "created": 1, '
                b'"model": "stub", "choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n'
                % word.encode()
            )
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@dataclass
class Gateway:
    url: str
    port: int
    supervisor: Supervisor
    unloads: list[str]
    state_dir: Path


@pytest.fixture
async def gateway(start_stub: StartStub, tmp_path: Path) -> AsyncIterator[Gateway]:
    upstream = await start_stub(await engine())
    port = free_port()
    stack = load_stack_text(
        f"gateway: {{listen: '127.0.0.1:{port}', cors_origins: ['{ALLOWED}']}}\n"
        f"models:\n  stub:\n    engine: external\n    url: {upstream}\n",
        "test stack",
    )
    unloads: list[str] = []
    async with aiohttp.ClientSession() as session:
        supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)

        async def control(name: str, action: str) -> str:
            # An external model has no process to stop; the gateway's side (which
            # requests reach the control at all) is what is under test here.
            unloads.append(name)
            supervisor.models[name].state = ModelState.STOPPED
            return "stopped"

        app = build_app(supervisor.models, session, stack.gateway, None, admin=control)
        server = await start_gateway(app, "127.0.0.1", port)
        url = f"http://127.0.0.1:{port}"
        me = ProcessIdentity.of(os.getpid())
        assert me is not None
        RunFile(up=me, gateway_url=url).write(tmp_path / "run.json")
        try:
            yield Gateway(url, port, supervisor, unloads, tmp_path)
        finally:
            await server.cleanup()


async def raw(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def unload_request(host: bytes, origin: bytes | None = None) -> bytes:
    extra = b"Origin: " + origin + b"\r\n" if origin else b""
    return (
        b"POST /admin/models/stub/unload HTTP/1.1\r\nHost: " + host + b"\r\n" + extra
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (b"evil.example", None),
        (b"evil.example:{port}", None),
        (b"rebind.attacker.test:{port}", b"http://rebind.attacker.test:{port}"),
        (b"127.0.0.1:{port}", b"http://evil.example"),
        (b"127.0.0.1:{port}", b"null"),
        (b"localhost:{port}", b"http://127.0.0.1:9"),
    ],
)
async def test_forged_host_or_foreign_origin_cannot_unload(
    gateway: Gateway, host: bytes, origin: bytes | None
) -> None:
    port = str(gateway.port).encode()
    request = unload_request(host.replace(b"{port}", port),
                             origin.replace(b"{port}", port) if origin else None)  # fmt: skip
    status, body = await raw(gateway.port, request)
    assert status == 403
    assert b'"code": "host_not_allowed"' in body or b'"code": "origin_not_allowed"' in body
    assert gateway.unloads == []
    assert gateway.supervisor.models["stub"].state is ModelState.READY
    chat = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.replace(b"{port}", port)
        + (b"\r\nOrigin: " + origin.replace(b"{port}", port) if origin else b"")
        + b'\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 17\r\n\r\n'
        + b'{"model": "stub"}'
    )  # fmt: skip
    status, body = await raw(gateway.port, chat)
    assert status == 403, body


async def test_same_origin_and_allowed_origin_work(gateway: Gateway) -> None:
    port = str(gateway.port).encode()
    for origin in (b"http://127.0.0.1:" + port, ALLOWED.encode()):
        status, body = await raw(gateway.port, (
            b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:" + port + b"\r\nOrigin: " + origin
            + b"\r\nConnection: close\r\n\r\n"
        ))  # fmt: skip
        assert status == 200, body
    async with aiohttp.ClientSession() as client:
        headers = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "content-type"}  # fmt: skip
        async with client.options(gateway.url + "/v1/chat/completions", headers=headers) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        chat = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}
        async with client.post(gateway.url + "/v1/chat/completions", json=chat,
                               headers={"Origin": ALLOWED}) as r:  # fmt: skip
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        async with client.post(gateway.url + "/admin/models/stub/unload",
                               headers={"Origin": gateway.url}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
    assert gateway.unloads == ["stub"]


async def test_openai_client_works(gateway: Gateway) -> None:
    for base in (gateway.url, f"http://localhost:{gateway.port}"):
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        try:
            answer = await client.chat.completions.create(
                model="stub", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "hello"
            stream = await client.chat.completions.create(
                model="stub", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            assert text == "hello"
            models = await client.models.list()
            assert [m.id for m in models.data] == ["stub"]
            # its keep-alive connection now belongs to aiohttp's side: still served
            again = await client.chat.completions.create(
                model="stub", messages=[{"role": "user", "content": "hi"}]
            )
            assert again.choices[0].message.content == "hello"
        finally:
            await client.close()


async def test_cli_works(gateway: Gateway) -> None:
    env = {**os.environ, "SPARKSTACK_STATE_DIR": str(gateway.state_dir)}
    env.pop("SPARKSTACK_ADMIN_KEY", None)
    for args in (["status"], ["unload", "stub"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sparkstack", *args, env=env, cwd=gateway.state_dir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (args, out, err)
    assert gateway.unloads == ["stub"]
