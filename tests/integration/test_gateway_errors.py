"""Every gateway error is in the OpenAI error shape and says what to do."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sparkstack.supervisor.ports import free_port
from tests.integration.conftest import StartGateway, StartStub


async def _post(url: str, data: bytes) -> tuple[int, dict[str, dict[str, object]]]:
    async with aiohttp.ClientSession() as client:
        async with client.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.json()


async def test_unknown_model_is_404_listing_names(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    gateway = await start_test_gateway(await start_stub(web.Application()))
    status, body = await _post(gateway + "/v1/chat/completions", b'{"model": "gpt-5"}')
    assert status == 404
    error = body["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert "'gpt-5' does not exist" in str(error["message"])
    assert "Available models: other, stub, stub-alias." in str(error["message"])


async def test_malformed_json_and_missing_model_are_400(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    gateway = await start_test_gateway(await start_stub(web.Application()))
    status, body = await _post(gateway + "/v1/completions", b'{"model": ')
    assert status == 400 and "not valid JSON" in str(body["error"]["message"])
    status, body = await _post(gateway + "/v1/completions", b'{"prompt": "hi"}')
    assert status == 400 and body["error"]["param"] == "model"
    status, body = await _post(gateway + "/v1/completions", b"[1, 2]")
    assert status == 400 and "JSON object" in str(body["error"]["message"])


async def test_unreachable_engine_is_502(start_test_gateway: StartGateway) -> None:
    gateway = await start_test_gateway(f"http://127.0.0.1:{free_port()}")
    status, body = await _post(gateway + "/v1/embeddings", b'{"model": "stub", "input": "x"}')
    assert status == 502
    assert "not reachable" in str(body["error"]["message"])
    assert "sparkstack logs stub" in str(body["error"]["message"])


async def test_unknown_route_is_openai_shaped_404(
    start_stub: StartStub, start_test_gateway: StartGateway
) -> None:
    gateway = await start_test_gateway(await start_stub(web.Application()))
    async with aiohttp.ClientSession() as client:
        async with client.get(gateway + "/v1/nothing") as response:
            assert response.status == 404
            body = await response.json()
    assert body["error"]["type"] == "invalid_request_error"
