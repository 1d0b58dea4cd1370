"""aiperf and genai-perf exports read into runs that plot and compare like ours.
aiperf-run/ is a real aiperf 0.13.0 export (a stub server, concurrency 4);
genai-perf-sweep/ follows genai-perf's two-section CSV with quoted
thousands ("1,157.61"), one folder per concurrency as seed 000's sweep made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkstack.bench.imports import load_run
from sparkstack.bench.options import BenchOptionError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bench"


def test_aiperf_json_export() -> None:
    run, records = load_run(FIXTURES / "aiperf-run" / "profile_export_aiperf.json")
    raw = json.loads((FIXTURES / "aiperf-run" / "profile_export_aiperf.json").read_text())
    assert run.tool == "aiperf" and run.model == "stub" and records == []
    (point,) = run.points
    assert point.concurrency == 4 and point.label == "c=4"
    assert point.stat("ttft_ms") == raw["time_to_first_token"]["avg"]
    assert point.stat("ttft_ms", "p99") == raw["time_to_first_token"]["p99"]
    assert point.stat("itl_ms") == raw["inter_token_latency"]["avg"]
    assert point.stat("e2e_ms", "p50") == raw["request_latency"]["p50"]
    assert point.stat("chunk_gap_ms") == raw["inter_chunk_latency"]["avg"]
    assert point.output_token_throughput == raw["output_token_throughput"]["avg"]
    assert point.request_throughput == raw["request_throughput"]["avg"]
    assert point.requests_sent == 50 and point.requests_failed == 0
    assert point.duration_s == raw["benchmark_duration"]["avg"]


def test_aiperf_csv_export_matches_its_json() -> None:
    from_json, _ = load_run(FIXTURES / "aiperf-run" / "profile_export_aiperf.json")
    from_csv, _ = load_run(FIXTURES / "aiperf-run" / "profile_export_aiperf.csv")
    a, b = from_json.points[0], from_csv.points[0]
    assert b.stat("ttft_ms") == pytest.approx(a.stat("ttft_ms"), abs=0.01)
    assert b.stat("e2e_ms", "p99") == pytest.approx(a.stat("e2e_ms", "p99"), abs=0.01)
    assert b.output_token_throughput == pytest.approx(a.output_token_throughput, abs=0.01)
    assert b.requests_sent == a.requests_sent


def test_genai_perf_csv_sweep_with_quoted_thousands() -> None:
    run, _ = load_run(FIXTURES / "genai-perf-sweep", label="Brain 120B")
    assert run.tool == "genai-perf" and run.label == "Brain 120B"
    assert [p.concurrency for p in run.points] == [1, 32]
    c1, c32 = run.points
    assert c1.stat("ttft_ms") == 1157.61 and c1.stat("ttft_ms", "p95") == 1464.95
    assert c32.stat("e2e_ms") == 30565.06 and c32.stat("e2e_ms", "p95") == 40744.92
    assert c1.output_token_throughput == 23.66 and c32.output_token_throughput == 75.35
    assert c32.requests_sent == 64


def test_unknown_input_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(BenchOptionError, match="give a sparkstack run folder or an aiperf"):
        load_run(tmp_path)
    with pytest.raises(BenchOptionError, match="no such file"):
        load_run(tmp_path / "missing")
