"""Each bad input gets the right status and an OpenAI-shaped error (issue 5,
point 2): no key, wrong key, revoked key, key not allowed for the model, body
over the limit, malformed JSON, missing model, unknown model, rate and
concurrency limits, admin scope."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway.keys import KeyStore
from tests.integration.conftest import StartGateway, StartStub

CHAT = b'{"model": "stub", "messages": [{"role": "user", "content": "hi"}]}'


async def echo_app() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        if (await request.json()).get("slow"):
            await asyncio.sleep(1.0)
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def post(
    url: str, body: bytes = CHAT, key: str | None = None
) -> tuple[int, dict[str, dict[str, object]]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as client:
        async with client.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
            return r.status, await r.json()


def assert_openai_error(body: dict[str, dict[str, object]], status_type: str) -> str:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == status_type
    return str(error["message"])


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "config" / "keys.json")


async def test_keys_file_is_private_and_hashed(store: KeyStore) -> None:
    _, secret = store.create("alice")
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert secret not in store.path.read_text()


async def test_missing_wrong_and_revoked_keys_are_401(
    start_stub: StartStub, start_test_gateway: StartGateway, store: KeyStore
) -> None:
    _, secret = store.create("alice")
    gateway = await start_test_gateway(await start_stub(await echo_app()), keys=store)
    status, body = await post(gateway)
    assert status == 401 and "No API key" in assert_openai_error(body, "invalid_request_error")
    assert body["error"]["code"] == "missing_api_key"
    status, body = await post(gateway, key="sk-ss-nope")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, _ = await post(gateway, key=secret)
    assert status == 200
    store.revoke("alice")
    status, body = await post(gateway, key=secret)
    assert status == 401 and body["error"]["code"] == "revoked_api_key"


async def test_key_limited_to_models_is_403_elsewhere(
    start_stub: StartStub, start_test_gateway: StartGateway, store: KeyStore
) -> None:
    _, secret = store.create("bob", models=["other"])
    gateway = await start_test_gateway(await start_stub(await echo_app()), keys=store)
    status, body = await post(gateway, key=secret)
    assert status == 403
    assert "may not use model 'stub'" in assert_openai_error(body, "permission_error")
    status, _ = await post(gateway, b'{"model": "other", "messages": []}', key=secret)
    assert status == 200
    async with aiohttp.ClientSession() as client:
        headers = {"Authorization": f"Bearer {secret}"}
        async with client.get(gateway + "/v1/models", headers=headers) as response:
            ids = [m["id"] for m in (await response.json())["data"]]
    assert ids == ["other"]


async def test_admin_scope(
    start_stub: StartStub, start_test_gateway: StartGateway, store: KeyStore
) -> None:
    _, user = store.create("user")
    _, admin = store.create("root", admin=True)
    gateway = await start_test_gateway(await start_stub(await echo_app()), keys=store)
    async with aiohttp.ClientSession() as client:
        async with client.get(
            gateway + "/admin/status", headers={"Authorization": f"Bearer {user}"}
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "admin_scope_required"
        async with client.get(
            gateway + "/admin/status", headers={"Authorization": f"Bearer {admin}"}
        ) as response:
            assert response.status == 200


async def test_body_over_limit_is_413(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    gateway = await start_test_gateway(
        await start_stub(await echo_app()), gateway_yaml="max_body_mib: 0.001"
    )
    status, body = await post(gateway, b'{"model": "stub", "x": "' + b"a" * 2000 + b'"}')
    assert status == 413
    assert "larger than the limit of 1048 bytes" in assert_openai_error(
        body, "invalid_request_error"
    )


async def test_malformed_missing_and_unknown_model(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    gateway = await start_test_gateway(await start_stub(await echo_app()))
    status, body = await post(gateway, b'{"model": "stub",')
    assert status == 400 and "not valid JSON" in assert_openai_error(body, "invalid_request_error")
    status, body = await post(gateway, b'{"messages": []}')
    assert status == 400 and body["error"]["param"] == "model"
    status, body = await post(gateway, b'{"model": "gpt-9"}')
    assert status == 404 and body["error"]["code"] == "model_not_found"


async def test_rate_limit_is_429(
    start_stub: StartStub, start_test_gateway: StartGateway, store: KeyStore
) -> None:
    _, secret = store.create("carol", rate_per_minute=2)
    gateway = await start_test_gateway(await start_stub(await echo_app()), keys=store)
    assert (await post(gateway, key=secret))[0] == 200
    assert (await post(gateway, key=secret))[0] == 200
    status, body = await post(gateway, key=secret)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in assert_openai_error(body, "requests")


async def test_concurrency_limit_is_429(
    start_stub: StartStub, start_test_gateway: StartGateway, store: KeyStore
) -> None:
    _, secret = store.create("dave", max_concurrency=1)
    gateway = await start_test_gateway(await start_stub(await echo_app()), keys=store)
    slow = b'{"model": "stub", "slow": true}'
    first = asyncio.create_task(post(gateway, slow, key=secret))
    await asyncio.sleep(0.3)
    status, body = await post(gateway, key=secret)
    assert status == 429 and body["error"]["code"] == "concurrency_limit_exceeded"
    assert (await first)[0] == 200
    assert (await post(gateway, key=secret))[0] == 200


async def test_max_inflight_is_503(start_stub: StartStub, start_test_gateway: StartGateway) -> None:
    gateway = await start_test_gateway(
        await start_stub(await echo_app()), gateway_yaml="max_inflight: 1"
    )
    first = asyncio.create_task(post(gateway, b'{"model": "stub", "slow": true}'))
    await asyncio.sleep(0.3)
    status, body = await post(gateway)
    assert status == 503 and body["error"]["code"] == "too_many_requests_in_flight"
    assert (await first)[0] == 200
