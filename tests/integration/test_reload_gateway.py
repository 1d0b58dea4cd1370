"""Hot reload through the gateway, in process, over external models (no engine
processes; issue 15): POST /admin/reload needs the admin scope and answers the
outcome; an added model is routed at once, a removed one answers 404
model_not_found, a changed alias routes the new way, gateway settings that
cannot change live are kept and named, and a broken file changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.gateway.app import FORWARDER_KEY
from sparkstack.gateway.keys import KeyIndex, KeyStore
from sparkstack.gateway.reload import models_changed
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.reload import Reloader
from tests.integration.conftest import StartStub


async def echo_app() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"object": "chat.completion", "model": "x", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def stack_text(upstream: str, models: dict[str, str], listen: str = "127.0.0.1:8080") -> str:
    lines = [f'gateway: {{listen: "{listen}"}}', "models:"]
    for name, extra in models.items():
        lines.append(f"  {name}: {{engine: external, url: {upstream}/v1{extra}}}")
    return "\n".join(lines) + "\n"


@dataclass
class Running:
    url: str
    upstream: str
    path: Path
    admin: str
    user: str
    events: list[tuple[str, str, str | None]]

    async def reload(self, key: str | None = None) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {key or self.admin}"}
        async with (
            aiohttp.ClientSession() as client,
            client.post(self.url + "/admin/reload", headers=headers) as response,
        ):
            return response.status, await response.json()

    async def ask(self, model: str) -> tuple[int, dict[str, object]]:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {self.user}"}
        async with (
            aiohttp.ClientSession() as client,
            client.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r,
        ):
            return r.status, await r.json()


@pytest.fixture
async def running(tmp_path: Path, start_stub: StartStub) -> AsyncIterator[Running]:
    upstream = await start_stub(await echo_app())
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(upstream, {"keep": "", "gone": ""}))
    store = KeyStore(tmp_path / "keys.json")
    _, admin = store.create("root", admin=True)
    _, user = store.create("user")
    events: list[tuple[str, str, str | None]] = []
    stack = load_stack(path)
    session = aiohttp.ClientSession()
    supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)
    reloader = Reloader(
        supervisor, lambda: load_stack(path), None, lambda: None,
        lambda model, event, detail: events.append((model, event, detail)),
    )  # fmt: skip
    app = build_app(
        supervisor.models, session, stack.gateway, KeyIndex(store, check_interval=0.0),
        reload=reloader.reload,
    )  # fmt: skip
    reloader.on_models = lambda: models_changed(app[FORWARDER_KEY])
    port = free_port()
    runner = await start_gateway(app, "127.0.0.1", port)
    try:
        yield Running(f"http://127.0.0.1:{port}", upstream, path, admin, user, events)
    finally:
        await runner.cleanup()
        await session.close()


async def test_reload_needs_the_admin_scope(running: Running) -> None:
    status, body = await running.reload(key=running.user)
    assert status == 403, body
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "admin_scope_required"


async def test_added_removed_and_changed_models_route_at_once(running: Running) -> None:
    assert (await running.ask("keep"))[0] == 200
    assert (await running.ask("gone"))[0] == 200
    running.path.write_text(
        stack_text(running.upstream, {"keep": ", aliases: [kept]", "fresh": ""}, "0.0.0.0:9")
    )
    status, result = await running.reload()
    assert status == 200 and result["applied"] is True, result
    assert result["added"] == ["fresh"] and result["removed"] == ["gone"]
    assert result["changed"] == ["keep"]
    assert result["kept_settings"] == ["gateway.listen"]
    assert "kept the running gateway.listen" in str(result["summary"])
    assert (await running.ask("fresh"))[0] == 200
    assert (await running.ask("kept"))[0] == 200
    status, body = await running.ask("gone")
    error = body["error"]
    assert status == 404 and isinstance(error, dict) and error["code"] == "model_not_found"
    names = [(model, event) for model, event, _ in running.events]
    assert ("fresh", "reload_added") in names and ("gone", "reload_removed") in names
    assert ("keep", "reload_changed") in names and ("stack", "reload_applied") in names


async def test_a_broken_file_changes_nothing(running: Running) -> None:
    running.path.write_text("models:\n  keep: {engine: external\n")
    status, result = await running.reload()
    assert status == 200 and result["applied"] is False
    assert "invalid YAML" in str(result["reason"])
    running.path.write_text(stack_text(running.upstream, {"keep": ", context: -1"}))
    status, result = await running.reload()
    assert result["applied"] is False and "models.keep.context" in str(result["reason"])
    assert (await running.ask("keep"))[0] == 200
    assert (await running.ask("gone"))[0] == 200
    assert [event for _, event, _ in running.events] == ["reload_rejected", "reload_rejected"]
