"""Request ids and the gateway's access log, and ``/admin/logs/{model}`` (issue 15,
point 2), against an in-process gateway with its state dir and a stub upstream
that records what reaches it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.integration.conftest import StartStub
from tests.support import SMOL_GGUF

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Gateway:
    url: str
    settings: Settings
    user: str
    admin: str
    seen_ids: list[str | None]

    def auth(self, admin: bool = False, request_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.admin if admin else self.user}"}
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        return headers

    async def access_lines(self, wanted: int) -> list[dict[str, Any]]:
        """The access log once it holds ``wanted`` lines (it is flushed every 0.5 s)."""
        path = self.settings.gateway_log_file
        deadline = time.monotonic() + 3.0
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= wanted or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            await asyncio.sleep(0.1)


@pytest.fixture
async def gateway(tmp_path: Path, start_stub: StartStub) -> AsyncIterator[Gateway]:
    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("X-Request-Id"))
        payload = await request.json()
        if payload.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await asyncio.sleep(0.05)
            await response.write(b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n')
            await response.write(b"data: [DONE]\n\n")
            return response
        return web.json_response({"choices": [{"message": {"content": "hi"}}]})

    stub = web.Application()
    stub.router.add_post("/v1/chat/completions", chat)
    upstream = await start_stub(stub)
    stack = load_stack_text(
        f"models:\n  stub:\n    engine: external\n    url: {upstream}\n"
        f"  smol:\n    engine: llamacpp\n    model: {SMOL_GGUF}\n    policy: on_demand\n",
        "test stack",
    )
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state", config_dir=tmp_path)
    store = KeyStore(settings.keys_file)
    _, user = store.create("alice")
    _, admin = store.create("root", admin=True)
    async with aiohttp.ClientSession() as session:
        supervisor = Supervisor(stack, settings, session)
        index = KeyIndex(store, check_interval=0.0)
        app = build_app(supervisor.models, session, stack.gateway, index, settings=settings)
        port = free_port()
        server = await start_gateway(app, "127.0.0.1", port)
        try:
            yield Gateway(f"http://127.0.0.1:{port}", settings, user, admin, seen)
        finally:
            await server.cleanup()


async def test_request_ids_reach_the_engine_the_client_and_the_access_log(
    gateway: Gateway,
) -> None:
    url = gateway.url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as client:
        async with client.post(url, json=CHAT, headers=gateway.auth(request_id="trace-1")) as r:
            assert r.status == 200 and r.headers["x-request-id"] == "trace-1"
        async with client.post(url, json=CHAT, headers=gateway.auth()) as r:
            assert r.status == 200
            made = r.headers["x-request-id"]
        bad = "no spaces allowed"
        async with client.post(url, json=CHAT, headers=gateway.auth(request_id=bad)) as r:
            replaced = r.headers["x-request-id"]
            assert replaced != bad
        stream = {**CHAT, "stream": True}
        async with client.post(url, json=stream, headers=gateway.auth(request_id="s-1")) as r:
            assert r.headers["x-request-id"] == "s-1"
            await r.read()
        async with client.post(url, json={**CHAT, "model": "nope"}, headers=gateway.auth()) as r:
            assert r.status == 404
            missing = r.headers["x-request-id"]
        async with client.get(
            gateway.url + "/v1/models", headers=gateway.auth(request_id="list-1")
        ) as r:
            assert r.status == 200 and r.headers["X-Request-Id"] == "list-1"
    assert gateway.seen_ids == ["trace-1", made, replaced, "s-1"]
    lines = await gateway.access_lines(6)
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == {"trace-1", made, replaced, "s-1", missing, "list-1"}
    first = by_id["trace-1"]
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["model"] == "stub" and first["status"] == 200 and first["key"] == "alice"
    assert first["bytes"] > 0 and first["duration_ms"] > 0 and first["ttft_ms"] is None
    assert str(first["upstream"]).startswith("http://127.0.0.1:")
    assert by_id["s-1"]["ttft_ms"] >= 40
    assert by_id[missing]["status"] == 404 and by_id[missing]["model"] == "nope"
    assert by_id["list-1"]["method"] == "GET" and by_id["list-1"]["key"] == "alice"
    text = gateway.settings.gateway_log_file.read_text()
    assert gateway.user not in text and gateway.admin not in text  # names, never keys


async def test_admin_logs_tail_follow_and_refusals(gateway: Gateway) -> None:
    log = gateway.settings.log_dir / "smol.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"old line {i}\n" for i in range(10)))
    base = gateway.url + "/admin/logs/"
    async with aiohttp.ClientSession() as client:
        async with client.get(base + "smol?tail=2", headers=gateway.auth(admin=True)) as r:
            assert r.status == 200 and await r.text() == "old line 8\nold line 9\n"
        async with client.get(base + "nope", headers=gateway.auth(admin=True)) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "model_not_found"
        async with client.get(base + "stub", headers=gateway.auth(admin=True)) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "no_engine_log"
        async with client.get(base + "smol", headers=gateway.auth()) as r:
            assert r.status == 403
        async with client.get(base + "smol?tail=x", headers=gateway.auth(admin=True)) as r:
            assert r.status == 400
        follow = base + "smol?tail=1&follow=1"
        async with client.get(follow, headers=gateway.auth(admin=True)) as r:
            assert r.status == 200
            assert await r.content.readuntil(b"\n") == b"old line 9\n"
            with log.open("a") as handle:
                handle.write("engine says hello\n")
            arrived = await asyncio.wait_for(r.content.readuntil(b"\n"), 2)
            assert arrived == b"engine says hello\n"
        # the client left: the gateway ended the follow (499: the client closed it)
        lines = await gateway.access_lines(6)
        follows = [line for line in lines if line["path"] == "/admin/logs/smol"]
        assert [line["status"] for line in follows] == [200, 403, 400, 499]
        assert follows[-1]["key"] == "root"
        async with client.get(base + "gateway?tail=1", headers=gateway.auth(admin=True)) as r:
            assert json.loads(await r.text())["path"].startswith("/admin/logs/")
