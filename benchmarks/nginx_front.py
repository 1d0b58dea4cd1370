"""The exported nginx site in front of a real engine: how much later does a
streamed answer's first chunk arrive through nginx than direct from the gateway?

Starts `sparkstack up` with SmolLM2 on llama.cpp, exports the site with
`sparkstack export nginx`, runs the Debian nginx with it, then alternates the
same streamed chat request direct and through nginx (a fresh connection each
time, as a new client would), timing the first content chunk and the whole
stream. Reports medians, the nginx/direct ratio and the added milliseconds.

usage: python -m benchmarks.nginx_front [--rounds N] [--max-tokens N] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.nginx_run import nginx_running, write_config
from tests.support import REPO, SMOL_GGUF, serving

from sparkstack.supervisor.ports import free_port

RESULTS = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class Timing:
    first_chunk_ms: float
    total_ms: float


def stream_once(host_port: str, max_tokens: int) -> Timing:
    """One streamed chat answer from smol: time to the first content chunk and to the end."""
    body = json.dumps({
        "model": "smol", "stream": True, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": "Count from one to ten."}],
    })  # fmt: skip
    conn = http.client.HTTPConnection(host_port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{host_port}: HTTP {response.status} {response.read()[:300]!r}")
        first = None
        received = b""
        while chunk := response.read1(65536):
            received += chunk
            if first is None and b'"content"' in received:
                first = time.perf_counter()
        end = time.perf_counter()
    finally:
        conn.close()
    if first is None:
        raise RuntimeError(f"{host_port}: no content chunk in {received[:300]!r}")
    return Timing((first - started) * 1000, (end - started) * 1000)


@dataclass(frozen=True)
class FrontComparison:
    rounds: int
    direct_first_chunk_ms: float
    nginx_first_chunk_ms: float
    added_first_chunk_ms: float
    first_chunk_ratio: float
    direct_total_ms: float
    nginx_total_ms: float
    added_total_ms: float


def compare(direct: str, front: str, rounds: int, max_tokens: int) -> FrontComparison:
    """Alternate direct and nginx requests ``rounds`` times (after one warm-up each)."""
    stream_once(direct, max_tokens)
    stream_once(front, max_tokens)
    runs: dict[str, list[Timing]] = {"direct": [], "nginx": []}
    for index in range(rounds):
        order = [("direct", direct), ("nginx", front)]
        for name, target in order if index % 2 == 0 else reversed(order):
            runs[name].append(stream_once(target, max_tokens))

    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(t, field) for t in runs[name]))

    d_first, n_first = median("direct", "first_chunk_ms"), median("nginx", "first_chunk_ms")
    d_total, n_total = median("direct", "total_ms"), median("nginx", "total_ms")
    return FrontComparison(
        rounds=rounds,
        direct_first_chunk_ms=round(d_first, 2),
        nginx_first_chunk_ms=round(n_first, 2),
        added_first_chunk_ms=round(n_first - d_first, 2),
        first_chunk_ratio=round(n_first / d_first, 3),
        direct_total_ms=round(d_total, 2),
        nginx_total_ms=round(n_total, 2),
        added_total_ms=round(n_total - d_total, 2),
    )


def smol_stack(folder: Path, gateway_port: int) -> Path:
    stack = folder / "smol-front.yaml"
    stack.write_text(
        f"machine: auto\nhost_reserve_gib: 1\ngateway: {{listen: '127.0.0.1:{gateway_port}'}}\n"
        f"models:\n  smol: {{engine: llamacpp, model: '{SMOL_GGUF}', context: 1024}}\n"
    )
    return stack


def export_site(stack: Path, listen: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "nginx", str(stack),
         "--server-name", "smol.example.com", "--listen", listen],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "nginx_front.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparkstack-nginx-front-") as scratch:
        tmp = Path(scratch)
        gateway_port, nginx_port = free_port(), free_port()
        stack = smol_stack(tmp, gateway_port)
        conf = write_config(tmp / "nginx", {"smol": export_site(stack, f"127.0.0.1:{nginx_port}")})
        with serving(stack, tmp / "state", timeout=180, port=gateway_port):
            front = f"127.0.0.1:{nginx_port}"
            with nginx_running(conf, f"http://{front}/health"):
                result = compare(f"127.0.0.1:{gateway_port}", front, args.rounds, args.max_tokens)
    report = {
        "machine": {"cpus": os.cpu_count()},
        "engine": "llama.cpp (llama-cpp-python), SmolLM2-135M Q4_1",
        "max_tokens": args.max_tokens,
        "summary": asdict(result),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
