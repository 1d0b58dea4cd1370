"""Issue 15, points 2, 3 and the progress part of 4, with the real llama.cpp engine:
an engine's log followed over the admin API while it starts; a gateway call's
request id found in the gateway's JSON log; ``/v1/models`` states and the
expected load time learned from the first start, within 20% of the next one and
kept across a restart; ``Retry-After`` on a refused wait; progress events that
the official ``openai`` client iterates without error."""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import OpenAI

from tests.support import SMOL_GGUF, UpProcess, get_json, serving

pytestmark = pytest.mark.engines
CHAT = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
STACK = (
    "gateway: {keepalive_interval: 0.2s, wait_progress: events, max_waiting: 2}\n"
    f"models:\n  smol:\n    engine: llamacpp\n    model: {SMOL_GGUF}\n"
    "    context: 512\n    policy: on_demand\n    idle_timeout: 10m\n"
)
RESULTS: dict[str, float] = {}
"""Numbers measured along the way, written beside the state dir for the README."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("logs-listing")
    (folder / "stack.yaml").write_text(STACK)
    return folder


@pytest.fixture(scope="module")
def up(folder: Path) -> Iterator[UpProcess]:
    with serving(folder / "stack.yaml", folder / "state") as up:
        # Let `up` finish its own start (first telemetry and memory samples) first: on
        # two shared cores it slows llama.cpp's spinning threads, and the first start
        # is the one the expected load time is learned from.
        time.sleep(3)
        yield up


def listing(up: UpProcess) -> dict[str, Any]:
    models = get_json(up.url + "/v1/models")["data"]
    assert isinstance(models, list)
    return dict(next(m for m in models if m["id"] == "smol"))


def admin(up: UpProcess, action: str) -> float:
    """POST /admin/models/smol/ACTION; the seconds it took."""
    request = urllib.request.Request(f"{up.url}/admin/models/smol/{action}", method="POST")
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    return time.perf_counter() - began


async def load_following_the_log(up: UpProcess) -> tuple[bytes, list[str]]:
    """Load smol while following its log over the admin API; what the follow
    received until the engine served, and the states /v1/models showed meanwhile
    (polled every 0.1 s: gently, as this start's time is measured too)."""
    states: list[str] = []
    received: list[bytes] = []

    async def read(log: aiohttp.ClientResponse) -> None:
        async for chunk in log.content.iter_any():
            received.append(chunk)
            if b"Uvicorn running" in b"".join(received):
                return

    async with aiohttp.ClientSession() as client:
        follow = f"{up.url}/admin/logs/smol?follow=1&tail=0"
        async with client.get(follow) as log:
            assert log.status == 200
            reader = asyncio.ensure_future(read(log))
            load = asyncio.ensure_future(asyncio.to_thread(admin, up, "load"))
            while not load.done():
                async with client.get(up.url + "/v1/models") as response:
                    models = (await response.json())["data"]
                states.append(next(m["state"] for m in models if m["id"] == "smol"))
                await asyncio.wait([load], timeout=0.1)
            await load
            await asyncio.wait_for(reader, 5)
    states.append(str(listing(up)["state"]))
    return b"".join(received), states


async def test_follow_the_log_while_it_starts_and_the_listing_tells_the_truth(
    up: UpProcess,
) -> None:
    before = listing(up)
    assert before["state"] == "stopped" and before["object"] == "model"
    assert before["expected_load_seconds"] is None and before["measured_bytes"] is None
    assert isinstance(before["planned_bytes"], int) and before["planned_bytes"] > 0

    received, states = await load_following_the_log(up)
    text = received.decode(errors="replace")
    assert "=== sparkstack starts smol" in text  # the start, as it happened
    assert "llama" in text and "Uvicorn running" in text  # the engine's own start lines
    assert "starting" in states and states[-1] == "ready"

    first = listing(up)
    assert first["expected_load_seconds"] == first["last_load_seconds"] > 0
    deadline = time.monotonic() + 10
    while listing(up)["measured_bytes"] is None:  # the telemetry samples every 2 s
        assert time.monotonic() < deadline, "no measured memory for a running engine"
        await asyncio.sleep(0.2)
    assert listing(up)["measured_bytes"] > 10 * 2**20

    models = OpenAI(base_url=up.url + "/v1", api_key="unused").models.list()
    smol = next(m for m in models.data if m.id == "smol")
    assert (smol.model_extra or {})["state"] == "ready"

    admin(up, "unload")
    assert listing(up)["state"] == "stopped"
    assert listing(up)["expected_load_seconds"] == first["expected_load_seconds"]
    wall = admin(up, "load")
    second = listing(up)
    expected, measured = first["expected_load_seconds"], second["last_load_seconds"]
    RESULTS.update(first_start=expected, second_start=measured, second_wall=wall)
    assert abs(expected - measured) <= 0.2 * measured, RESULTS
    assert second["expected_load_seconds"] == pytest.approx((expected + measured) / 2)


def test_request_ids_are_in_the_gateway_json_log(up: UpProcess) -> None:
    def chat(request_id: str | None) -> str:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        request = urllib.request.Request(
            up.url + "/v1/chat/completions", data=json.dumps(CHAT).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            return str(response.headers["x-request-id"])

    assert chat("e2e-given-42") == "e2e-given-42"  # kept from llama.cpp: not a UUID
    given_uuid = str(uuid.uuid4())
    assert chat(given_uuid) == given_uuid  # reaches llama.cpp, which takes UUIDs only
    made = chat(None)
    assert made and made != "e2e-given-42"
    path = up.state_dir / "logs" / "gateway.jsonl"
    deadline = time.monotonic() + 5
    lines: dict[str, dict[str, Any]] = {}
    while not {"e2e-given-42", given_uuid, made} <= set(lines):
        assert time.monotonic() < deadline, "the request ids never reached the access log"
        time.sleep(0.2)
        lines = {
            r["request_id"]: r for r in map(json.loads, path.read_text().splitlines())
        }  # fmt: skip
    for rid in ("e2e-given-42", given_uuid, made):
        assert lines[rid]["model"] == "smol" and lines[rid]["status"] == 200
        assert lines[rid]["bytes"] > 0 and str(lines[rid]["upstream"]).startswith("http://")
    printed = up.sparkstack("logs", "gateway", "-n", "200")
    assert printed.returncode == 0, printed.stderr
    assert "e2e-given-42" in printed.stdout and made in printed.stdout


def test_progress_events_parse_in_the_openai_client(up: UpProcess) -> None:
    admin(up, "unload")
    client = OpenAI(base_url=up.url + "/v1", api_key="unused")
    progress: list[dict[str, Any]] = []
    content = ""
    stream = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
    )
    for chunk in stream:
        extra = (chunk.model_extra or {}).get("sparkstack_progress")
        if extra:
            progress.append(extra)
        elif chunk.choices:
            content += chunk.choices[0].delta.content or ""
    assert progress, "no progress while the model loaded"
    assert progress[0]["queue_position"] == 1 and progress[0]["expected_seconds"] > 0
    assert all(p["model"] == "smol" for p in progress)
    assert progress[-1]["elapsed_seconds"] >= progress[0]["elapsed_seconds"]
    assert content  # then the answer itself
    RESULTS["progress_events"] = len(progress)


async def test_a_refused_wait_gets_retry_after_from_the_expected_load_time(
    up: UpProcess,
) -> None:
    admin(up, "unload")
    expected = float(listing(up)["expected_load_seconds"])
    url = up.url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as client:
        waiting = [await client.post(url, json={**CHAT, "stream": True}) for _ in range(2)]
        firsts = [await w.content.readuntil(b"\n\n") for w in waiting]
        positions = [json.loads(f[6:])["sparkstack_progress"]["queue_position"] for f in firsts]
        assert sorted(positions) == [1, 2]
        async with client.post(url, json=CHAT) as refused:  # gateway.max_waiting is 2
            assert refused.status == 503
            assert (await refused.json())["error"]["code"] == "model_load_queue_full"
            retry = int(refused.headers["Retry-After"])
        for w in waiting:
            assert b"[DONE]" in await w.read()
            w.release()
    RESULTS["retry_after"] = retry
    assert 1 <= retry <= math.ceil(expected)
    admin(up, "unload")


def test_expected_load_time_survives_a_restart(up: UpProcess, folder: Path) -> None:
    before = listing(up)["expected_load_seconds"]
    assert before is not None
    assert up.sparkstack("down").returncode == 0
    up.proc.wait(timeout=60)
    with serving(folder / "stack.yaml", folder / "state") as again:
        after = listing(again)
        assert after["state"] == "stopped" and after["expected_load_seconds"] == before
    (folder / "results.json").write_text(json.dumps(RESULTS))  # numbers for the README
