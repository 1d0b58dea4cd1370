"""The gateway's telemetry routes in process, over stub upstreams: the status
document (schema, per-model figures after traffic), the SSE event stream, the
dashboard assets, the memory gauges in /metrics, and the admin-key checks;
`sparkstack top`'s one-line errors for a wrong key and for a URL that is no
gateway (issue 12, point 5)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway.keys import KeyStore
from tests.http_stub import QuietHandler, http_server
from tests.integration.conftest import StartGateway, StartStub

CHAT = {"model": "stub", "messages": [{"role": "user", "content": "hi"}]}


async def chat_app() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyStore, str, str]:
    store = KeyStore(tmp_path / "config" / "keys.json")
    _, admin = store.create("ops", admin=True)
    _, user = store.create("app")
    return store, admin, user


async def test_status_document_events_and_dashboard(
    start_stub: StartStub, start_test_gateway: StartGateway, keys: tuple[KeyStore, str, str]
) -> None:
    store, admin, user = keys
    url = await start_test_gateway(await start_stub(await chat_app()), keys=store)
    auth = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession() as client:
        for _ in range(5):
            async with client.post(
                url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {user}"}
            ) as r:
                assert r.status == 200
        for _ in range(50):  # until a telemetry sample (once a second) has seen them
            async with client.get(url + "/admin/status", headers=auth) as r:
                assert r.status == 200
                doc = await r.json()
            seen = next(m for m in doc["models"] if m["name"] == "stub")
            if seen["requests_total"] == 5 and seen["requests_per_s"] > 0:
                break
            await asyncio.sleep(0.2)
        assert doc["schema_version"] == "sparkstack.status/v1"
        assert set(doc["machine"]) >= {
            "total_bytes",
            "available_bytes",
            "host_reserve_bytes",
            "unified",
            "watchdog",
        }
        stub = next(m for m in doc["models"] if m["name"] == "stub")
        assert stub["runtime"] == "external" and stub["state"] == "ready"
        assert stub["requests_total"] == 5 and stub["requests_per_s"] > 0
        for field in (
            "kv_cache_usage",
            "prompt_tok_s",
            "ttft_p50_ms",
            "itl_p95_ms",
            "pid",
            "planned_bytes",
            "measured_bytes",
            "running",
            "waiting",
            "last_events",
        ):
            assert field in stub

        for key, status in ((None, 401), ("sk-ss-wrong", 401), (user, 403)):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            for path in ("/admin/status", "/admin/events"):
                async with client.get(url + path, headers=headers) as r:
                    assert r.status == status, path
                    assert set((await r.json())["error"]) == {"message", "type", "param", "code"}

        async with client.get(url + "/admin/events", headers=auth) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.status == 200

        async with client.get(url + "/ui") as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
        assert "/ui/app.js" in page and "http" not in page.replace("http-equiv", "")
        for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            async with client.get(f"{url}/ui/{asset}") as r:
                assert r.status == 200 and r.content_type == kind
        async with client.get(url + "/ui/../keys.json") as r:
            assert r.status == 404

        async with client.get(url + "/metrics", headers=auth) as r:
            text = await r.text()
        assert 'sparkstack_model_state{model="stub",state="ready"} 1' in text
        assert 'sparkstack_model_memory_held_bytes{model="stub"}' in text


def test_top_says_in_one_line_what_is_wrong(
    tmp_path: Path, keys: tuple[KeyStore, str, str]
) -> None:
    class NotAGateway(QuietHandler):
        def do_GET(self) -> None:
            self.send_body(200, b"<html>hello</html>", "text/html")

    def top(url: str, key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sparkstack", "top", url, "--key", key],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )

    with http_server(NotAGateway) as port:
        result = top(f"http://127.0.0.1:{port}", "sk-ss-any")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a sparkstack gateway" in lines[0], result.stderr

    class RefusingGateway(QuietHandler):
        def do_GET(self) -> None:
            body = {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            self.send_body(401, json.dumps(body).encode())

    with http_server(RefusingGateway) as port:
        result = top(f"127.0.0.1:{port}", "sk-ss-wrong")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1 and "refused the key" in lines[0], result.stderr
    assert "Incorrect API key provided." in lines[0]
