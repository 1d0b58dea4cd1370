"""Gateway overhead: a fast stub upstream, the sparkstack gateway (auth on) and
the Debian nginx as a plain streaming proxy, measured in one run.

For each target (direct, gateway, nginx) and mode (plain JSON, streamed chunks):
requests/s at concurrency 16 and p50 latency at concurrency 1; rounds are
interleaved. Ratios are against the direct upstream. Client, stub, gateway and
nginx share this machine's cores, as in production on one box.

usage: python -m benchmarks.gateway_overhead [--seconds S] [--rounds N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sparkstack.supervisor.ports import free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CHUNKS = 64

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream stub {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://stub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


def wait_http(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def load(
    url: str, concurrency: int, seconds: float, stream: bool, key: str | None
) -> dict[str, float]:
    args = [sys.executable, "-m", "benchmarks.load_client", url, str(concurrency), str(seconds)]
    if stream:
        args.append("--stream")
    if key:
        args += ["--key", key]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway_overhead.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-bench-"))
    upstream, gateway, nginx = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(tmp / "state"),
        "SPARKSTACK_CONFIG_DIR": str(tmp / "config"),
        "PYTHONPATH": str(REPO),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.stubs.fast_upstream", str(upstream), str(CHUNKS)],
            cwd=REPO, env=env,
        ))  # fmt: skip
        key = create_key(env)
        stack = tmp / "stack.yaml"
        stack.write_text(
            f"models:\n  stub:\n    engine: external\n    url: http://127.0.0.1:{upstream}\n"
        )
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sparkstack", "up", str(stack), "--listen",
             f"127.0.0.1:{gateway}"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / name).mkdir()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=nginx))
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(subprocess.Popen([nginx_bin, "-c", str(tmp / "nginx.conf")]))
        wait_http(f"http://127.0.0.1:{upstream}/v1/models")
        wait_http(f"http://127.0.0.1:{gateway}/health")
        wait_http(f"http://127.0.0.1:{nginx}/v1/models")
        targets = {
            "direct": (f"http://127.0.0.1:{upstream}/v1/chat/completions", None),
            "gateway": (f"http://127.0.0.1:{gateway}/v1/chat/completions", key),
            "nginx": (f"http://127.0.0.1:{nginx}/v1/chat/completions", None),
        }
        runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        for round_index in range(args.rounds):
            for mode in ("plain", "stream"):
                for name, (url, token) in targets.items():
                    for concurrency in (16, 1):
                        result = load(url, concurrency, args.seconds, mode == "stream", token)
                        runs.setdefault(f"{name}/{mode}", {}).setdefault(
                            f"c{concurrency}", []
                        ).append(result)
                        print(f"round {round_index + 1} {name:8} {mode:6} c={concurrency:<3} "
                              f"{result['rps']:9.1f} req/s  p50 {result['p50_ms']:.3f} ms  "
                              f"errors {result['errors']}", flush=True)  # fmt: skip
        summary = summarize(runs)
        report = {
            "machine": {"cpus": os.cpu_count()},
            "chunks_per_stream": CHUNKS,
            "seconds_per_run": args.seconds,
            "rounds": args.rounds,
            "summary": summary,
            "runs": runs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def create_key(env: dict[str, str]) -> str | None:
    """A gateway API key (auth on), or None before keys exist."""
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "keys", "create", "bench", "--quiet"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def summarize(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, float]]:
    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    out: dict[str, dict[str, float]] = {}
    for mode in ("plain", "stream"):
        direct_rps = median([r["rps"] for r in runs[f"direct/{mode}"]["c16"]])
        direct_p50 = median([r["p50_ms"] for r in runs[f"direct/{mode}"]["c1"]])
        for name in ("gateway", "nginx"):
            rps = median([r["rps"] for r in runs[f"{name}/{mode}"]["c16"]])
            p50 = median([r["p50_ms"] for r in runs[f"{name}/{mode}"]["c1"]])
            out[f"{name}/{mode}"] = {
                "rps_c16": round(rps, 1),
                "direct_rps_c16": round(direct_rps, 1),
                "throughput_ratio": round(rps / direct_rps, 3),
                "p50_ms_c1": round(p50, 3),
                "direct_p50_ms_c1": round(direct_p50, 3),
                "added_p50_ms": round(p50 - direct_p50, 3),
            }
    return out


if __name__ == "__main__":
    main()
