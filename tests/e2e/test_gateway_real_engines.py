"""The gateway in front of the real demo engines: metrics with relayed engine
series (issue 5, point 4), no secret in any argv (point 2), and a bounded soak
of 10,000 mixed requests (point 5)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter

import aiohttp
import psutil
import pytest

from tests.support import UpProcess

pytestmark = pytest.mark.engines

CHAT = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
EMBED = {"model": "minilm", "input": "hello world"}


async def test_metrics_after_traffic_have_gateway_and_engine_series(demo_up: UpProcess) -> None:
    async with aiohttp.ClientSession() as client:
        for body, path in ((CHAT, "chat/completions"), (EMBED, "embeddings")):
            async with client.post(f"{demo_up.url}/v1/{path}", json=body) as response:
                assert response.status == 200
        stream = {**CHAT, "stream": True}
        async with client.post(f"{demo_up.url}/v1/chat/completions", json=stream) as response:
            await response.read()
        async with client.get(f"{demo_up.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert (
        value('sparkstack_requests_total{model="smol",route="/v1/chat/completions",status="200"}')
        >= 2
    )
    assert (
        value('sparkstack_requests_total{model="minilm",route="/v1/embeddings",status="200"}') >= 1
    )
    assert value('sparkstack_request_duration_seconds_count{model="smol"}') >= 2
    assert value('sparkstack_time_to_first_token_seconds_count{model="smol"}') >= 1
    assert any(line.startswith('sparkstack_requests_in_flight{model="smol"}') for line in lines)
    # vLLM's own series, relayed with the model label added
    assert any(line.startswith('vllm:kv_cache_usage_perc{model="minilm",') for line in lines)
    assert value('vllm:request_success_total{model="minilm",') >= 1
    assert lines.count("# TYPE vllm:kv_cache_usage_perc gauge") == 1


def test_no_secret_in_any_argv(demo_up: UpProcess) -> None:
    secrets: set[str] = set()
    for pid in demo_up.engine_pids().values():
        environ = psutil.Process(pid).environ()
        secrets |= {environ[k] for k in ("VLLM_API_KEY", "API_KEY") if k in environ}
    assert len(secrets) == 2, "each engine gets its own key through the environment"
    for proc in psutil.process_iter(["cmdline"]):
        argv = " ".join(proc.info["cmdline"] or [])
        assert not any(secret in argv for secret in secrets)
        assert "--api-key" not in argv and "--api_key" not in argv


async def _one(client: aiohttp.ClientSession, url: str, kind: str, abort: bool) -> str:
    if kind == "embed":
        async with client.post(f"{url}/v1/embeddings", json=EMBED) as response:
            await response.read()
            return str(response.status)
    body = {**CHAT, "stream": kind == "stream"}
    async with client.post(f"{url}/v1/chat/completions", json=body) as response:
        if abort:
            await response.content.readany()
            response.close()
            return "aborted"
        data = await response.read()
        if kind == "stream" and not data.rstrip().endswith(b"data: [DONE]"):
            return "truncated"
        return str(response.status)


async def _soak(url: str, total: int, concurrency: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    plan = [
        (rng.choices(["stream", "plain", "embed"], [0.25, 0.15, 0.6])[0], rng.random() < 0.05)
        for _ in range(total)
    ]
    plan = [(kind, abort and kind == "stream") for kind, abort in plan]
    outcomes: Counter[str] = Counter()
    queue = iter(plan)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as client:

        async def worker() -> None:
            for kind, abort in queue:
                outcomes[await _one(client, url, kind, abort)] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def _gateway_footprint(up: UpProcess) -> tuple[int, int]:
    proc = psutil.Process(up.proc.pid)
    return len(proc.net_connections(kind="tcp")), proc.memory_info().rss


async def test_soak_10000_mixed_requests(demo_up: UpProcess) -> None:
    await _soak(demo_up.url, 500, 8, seed=1)  # warm-up: pools and caches fill
    await asyncio.sleep(1)
    connections_before, rss_before = _gateway_footprint(demo_up)
    started = time.perf_counter()
    outcomes = await _soak(demo_up.url, 10_000, 8, seed=2)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(2)
    connections_after, rss_after = _gateway_footprint(demo_up)
    logging.getLogger(__name__).warning(
        "soak: %s in %.0fs; tcp %d->%d; rss %d->%d MiB", dict(outcomes), elapsed,
        connections_before, connections_after, rss_before >> 20, rss_after >> 20,
    )  # fmt: skip
    assert sum(outcomes.values()) == 10_000
    assert set(outcomes) <= {"200", "aborted"}, outcomes
    assert outcomes["aborted"] > 0
    assert connections_after <= connections_before + 2
    assert rss_after - rss_before < 30 * 2**20
