"""One model cannot starve the others (issue 19, point 3): each model has its own
in-flight cap beside the gateway's, so requests piling up on a hung engine get a
503 naming that model while every other model keeps answering."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.limits import Limiter, model_limits
from tests.integration.conftest import StartGateway, StartStub


async def half_hung_app(release: asyncio.Event) -> web.Application:
    """Requests for ``upstream-name`` (the model ``stub``) hang until ``release``;
    the model ``other`` answers at once."""

    async def chat(request: web.Request) -> web.Response:
        if (await request.json())["model"] == "upstream-name":
            await release.wait()
        return web.json_response({"object": "chat.completion", "choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_a_hung_model_fills_only_its_own_slots(
    start_test_gateway: StartGateway, start_stub: StartStub
) -> None:
    release = asyncio.Event()
    gateway = await start_test_gateway(
        await start_stub(await half_hung_app(release)), gateway_yaml="max_inflight: 4"
    )
    url = gateway + "/v1/chat/completions"
    async with aiohttp.ClientSession() as client:

        async def ask(model: str) -> tuple[int, dict[str, dict[str, str]]]:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with client.post(url, json=body) as response:
                return response.status, await response.json()

        hung = [asyncio.create_task(ask("stub")) for _ in range(2)]  # 4 // 2 models = 2 each
        await asyncio.sleep(0.3)
        status, body = await ask("stub")
        assert status == 503
        assert body["error"]["code"] == "model_overloaded"
        assert "stub" in body["error"]["message"]
        assert "max_inflight" in body["error"]["message"]
        for _ in range(5):
            assert (await ask("other"))[0] == 200
        release.set()
        assert [status for status, _ in await asyncio.gather(*hung)] == [200, 200]


def test_model_limits_share_the_gateway_cap_unless_set() -> None:
    assert model_limits(1024, {"a": None, "b": None}) == {"a": 512, "b": 512}
    assert model_limits(10, {"a": 3, "b": None, "c": None}) == {"a": 3, "b": 3, "c": 3}
    assert model_limits(1, {"a": None, "b": None}) == {"a": 1, "b": 1}


def test_the_limiter_counts_per_model_and_releases() -> None:
    limiter = Limiter(max_inflight=10, per_model={"a": 1, "b": 5})
    limiter.admit(None, "a")
    with pytest.raises(GatewayError) as refused:
        limiter.admit(None, "a")
    assert refused.value.status == 503 and refused.value.code == "model_overloaded"
    limiter.admit(None, "b")
    limiter.release(None, "a")
    limiter.admit(None, "a")
    assert limiter.inflight == 2
