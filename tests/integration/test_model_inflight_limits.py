"""One model cannot starve the others (issue 19, point 3): each model has its own
in-flight cap beside the gateway's, so requests piling up on a hung engine wait
in that model's own queue (issue 15: they queue instead of a 503; a full queue is
a 429, tests/integration/test_model_queues.py) while every other model keeps
answering."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.limits import Limiter
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
        queued = [asyncio.create_task(ask("stub")) for _ in range(3)]  # beyond: they queue
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in queued)
        for _ in range(5):
            assert (await ask("other"))[0] == 200
        async with client.get(gateway + "/metrics") as response:
            metrics = await response.text()
        assert 'sparkstack_requests_queued{model="stub"} 3' in metrics
        assert 'sparkstack_requests_in_flight{model="stub"} 2' in metrics
        release.set()
        assert [status for status, _ in await asyncio.gather(*hung, *queued)] == [200] * 5


def test_the_limiter_counts_the_gateway_cap_and_releases() -> None:
    limiter = Limiter(max_inflight=2)
    limiter.admit(None)
    limiter.admit(None)
    with pytest.raises(GatewayError) as refused:
        limiter.admit(None)
    assert refused.value.status == 503 and refused.value.code == "too_many_requests_in_flight"
    limiter.release(None)
    limiter.admit(None)
    assert limiter.inflight == 2
