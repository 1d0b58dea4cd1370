"""Keys fail closed (issue 19, point 3): a gateway started with keys (or listening
beyond loopback) refuses every request while its key file is missing, emptied or
damaged - 401 everywhere, the reason in /health - and recovers by itself once a
valid file is back."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway.keys import KeyIndex, KeyStore
from tests.integration.conftest import StartGateway, StartStub

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}


async def answer_app() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def statuses(gateway: str, key: str) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {key}"}
    out: dict[str, int] = {}
    async with aiohttp.ClientSession(headers=headers) as client:
        async with client.post(gateway + "/v1/chat/completions", json=CHAT) as r:
            out["chat"] = r.status
        for path in ("/v1/models", "/metrics", "/admin/status"):
            async with client.get(gateway + path) as r:
                out[path] = r.status
                if r.status == 401:
                    body = await r.json()
                    assert body["error"]["code"] == "key_file_unavailable"
    return out


async def health(gateway: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as client:
        async with client.get(gateway + "/health") as r:
            assert r.status == 200
            data: dict[str, object] = await r.json()
            return data


@pytest.mark.parametrize(
    "breakage",
    ["removed", "emptied", "zero bytes", "damaged json", "wrong schema"],
)
async def test_a_broken_key_file_refuses_everything_until_it_is_back(
    start_test_gateway: StartGateway, start_stub: StartStub, tmp_path: Path, breakage: str
) -> None:
    store = KeyStore(tmp_path / "config" / "keys.json")
    _, admin = store.create("ops", admin=True)
    good = store.path.read_bytes()
    gateway = await start_test_gateway(await start_stub(await answer_app()), keys=store)
    assert set((await statuses(gateway, admin)).values()) == {200}

    if breakage == "removed":
        store.path.unlink()
    elif breakage == "emptied":
        store.path.write_text('{"keys": []}')
    elif breakage == "zero bytes":
        store.path.write_bytes(b"")
    elif breakage == "damaged json":
        store.path.write_bytes(good[: len(good) // 2])
    else:
        store.path.write_text('{"keys": [{"id": 1}]}')
    assert set((await statuses(gateway, admin)).values()) == {401}
    state = await health(gateway)
    assert state["status"] == "degraded"
    assert "key file" in str(state["keys"])

    store.path.write_bytes(good)
    assert set((await statuses(gateway, admin)).values()) == {200}
    assert (await health(gateway))["keys"] == "required"


def test_listening_beyond_loopback_requires_keys_even_before_any_exists(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    index = KeyIndex(store, check_interval=0.0, required=True)
    assert index.enabled and index.problem is not None and "missing" in index.problem
    store.create("later")
    time.sleep(0.01)
    index.refresh(force=True)
    assert index.enabled and index.problem is None


def test_an_open_loopback_gateway_stays_open_without_keys(tmp_path: Path) -> None:
    index = KeyIndex(KeyStore(tmp_path / "keys.json"), check_interval=0.0)
    assert not index.enabled and index.problem is None
