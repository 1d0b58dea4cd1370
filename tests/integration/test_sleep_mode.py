"""vLLM sleep/wake driven through the adapter against a stub that speaks vLLM's
sleep API (issue 4, point 3), including the level choice: level 2 on unified
memory (level 1 would leave the weights in the same pool), level 1 on discrete."""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import REPO, UpProcess, get_json, start_up

STUB = REPO / "tests" / "stubs" / "vllm_sleep_stub.py"
CONFIG = REPO / "tests" / "fixtures" / "configs" / "meta-llama--Llama-3.1-8B.json"


def start(tmp_path: Path, unified: bool) -> UpProcess:
    model = tmp_path / "llama-8b"
    model.mkdir()
    shutil.copy(CONFIG, model / "config.json")
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        f"machine: {{total_gib: 80, device: cuda, unified: {str(unified).lower()}}}\n"
        "host_reserve_gib: 4\n"
        "models:\n  llama:\n    engine: vllm\n"
        f"    model: {model}\n    command: [{sys.executable}, {STUB}]\n"
        "    context: 8192\n    policy: on_demand\n    idle_timeout: 1s\n"
        "    sleep_mode: true\n    enforce_eager: true\n"
    )
    up = start_up(stack, tmp_path / "state")
    up.wait_ready(timeout=60)
    return up


def model_state(up: UpProcess) -> str:
    models = get_json(up.url + "/health")["models"]
    assert isinstance(models, dict)
    return str(models["llama"])


def chat(up: UpProcess) -> None:
    request = urllib.request.Request(
        up.url + "/v1/chat/completions", data=b'{"model": "llama", "messages": []}',
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def stub_calls(up: UpProcess) -> list[str]:
    port = get_json(up.url + "/admin/status")["models"][0]["port"]  # type: ignore[index]
    calls = get_json(f"http://127.0.0.1:{port}/stub/calls")
    assert isinstance(calls, list)
    return [str(c) for c in calls]


def wait_for(up: UpProcess, wanted: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while model_state(up) != wanted:
        assert time.monotonic() < deadline, f"never {wanted}"
        time.sleep(0.1)


@pytest.mark.parametrize(("unified", "level"), [(True, 2), (False, 1)])
def test_idle_model_sleeps_and_wakes(tmp_path: Path, unified: bool, level: int) -> None:
    up = start(tmp_path, unified)
    try:
        chat(up)  # wakes (starts) it
        wait_for(up, "sleeping")
        calls = stub_calls(up)
        assert f"POST /sleep?level={level}" in calls
        assert "GET /is_sleeping" in calls
        chat(up)  # wakes it from sleep, no restart
        calls = stub_calls(up)
        assert "POST /wake_up" in calls
        reloads = [c for c in calls if c.startswith("POST /collective_rpc")]
        if level == 2:
            assert reloads == ['POST /collective_rpc {"method": "reload_weights"}']
            assert "POST /reset_prefix_cache" in calls
        else:
            assert reloads == []
        assert model_state(up) == "ready"
        assert up.output().count("starting llama") == 1
        with urllib.request.urlopen(up.url + "/metrics") as response:
            metrics = response.read()
        assert f'event="woke_level_{level}"'.encode() in metrics
    finally:
        up.sparkstack("down")
        up.kill()


def test_models_list_shows_sleeping_and_back(tmp_path: Path) -> None:
    """Issue 15, point 3: /v1/models tells stopped, ready, sleeping and ready again,
    and the expected load time learned from the one cold start."""
    up = start(tmp_path, unified=True)

    def listed() -> dict[str, object]:
        data = get_json(up.url + "/v1/models")["data"]
        assert isinstance(data, list)
        return dict(next(m for m in data if m["id"] == "llama"))

    try:
        assert listed()["state"] == "stopped" and listed()["expected_load_seconds"] is None
        chat(up)
        ready = listed()
        assert ready["state"] == "ready" and ready["expected_load_seconds"] is not None
        wait_for(up, "sleeping")
        assert listed()["state"] == "sleeping"
        chat(up)  # woken from sleep: no new start is learned
        assert listed()["state"] == "ready"
        assert listed()["last_load_seconds"] == ready["last_load_seconds"]
    finally:
        up.sparkstack("down")
        up.kill()
