"""Gateway overhead: a fast stub upstream, the sparkstack gateway (auth on) and
the Debian nginx as a plain streaming proxy, measured in one run.

For each target (direct, gateway, nginx) and mode (plain JSON, streamed chunks):
requests/s at concurrency 16 and p50 latency at concurrency 1; rounds are
interleaved. Ratios are against the direct upstream, taken within each round
(the pair measured back to back) and then the median over rounds. At
concurrency 1 each request through a proxy is followed by one straight to the
stub, and the added latency is the difference of the two p50s of that run
(drift between runs on a shared machine is larger than what is measured). Each
run also records the CPU time the server under test spent per request.

On a machine of 8 cores or more each part gets cores of its own (stub, gateway
and nginx one each, the clients the rest) and concurrency 16 is spread over
several client processes, so the one-core aiohttp client is not what is
measured; on a smaller machine everything shares the cores, as on one small box.

usage: python -m benchmarks.gateway_overhead [--seconds S] [--rounds N] [--out FILE]
                                             [--client-processes N] [--no-pin]
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

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


@dataclass(frozen=True)
class Layout:
    """Which cores each part runs on (None: wherever the scheduler puts it)."""

    stub: set[int] | None
    gateway: set[int] | None
    nginx: set[int] | None
    clients: list[set[int] | None]

    @classmethod
    def for_machine(cls, cpus: int, processes: int, pin: bool) -> Layout:
        if not pin or cpus < 8:
            return cls(None, None, None, [None] * processes)
        spare = list(range(3, cpus))
        return cls({0}, {1}, {2}, [{spare[i % len(spare)]} for i in range(processes)])


def pinned(cores: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child to ``cores``."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def load(
    url: str,
    concurrency: int,
    seconds: float,
    stream: bool,
    key: str | None,
    layout: Layout | None = None,
    paired: str | None = None,
) -> dict[str, float]:
    """Closed-loop load from ``len(layout.clients)`` processes (one at concurrency 1)
    measuring the same interval; latencies merged exactly. No layout: one
    process, wherever the scheduler puts it. ``paired`` (concurrency 1): the
    direct URL, asked after each request (``paired_p50_ms``)."""
    layout = layout or Layout(None, None, None, [None])
    processes = 1 if concurrency == 1 else min(len(layout.clients), concurrency)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start_at = time.time() + 1.0 + 0.05 * processes
    with tempfile.TemporaryDirectory() as tmp:
        clients = []
        for i, share in enumerate(shares):
            args = [sys.executable, "-m", "benchmarks.load_client", url, str(share),
                    str(seconds), "--start-at", str(start_at),
                    "--latencies", f"{tmp}/{i}.json"]  # fmt: skip
            if stream:
                args.append("--stream")
            if key:
                args += ["--key", key]
            if paired:
                args += ["--paired", paired]
            clients.append(subprocess.Popen(
                args, stdout=subprocess.PIPE, text=True, cwd=REPO,
                preexec_fn=pinned(layout.clients[i]),
            ))  # fmt: skip
        parts = []
        for client in clients:
            out, _ = client.communicate()
            if client.returncode != 0:
                raise RuntimeError(f"a load client failed (exit {client.returncode})")
            parts.append(json.loads(out))
        latencies = sorted(
            x for i in range(processes) for x in json.loads(Path(f"{tmp}/{i}.json").read_text())
        )
    seconds_run = max(part["seconds"] for part in parts)
    paired_p50 = {"paired_p50_ms": parts[0]["paired_p50_ms"]} if paired else {}

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "errors": sum(part["errors"] for part in parts),
        "seconds": seconds_run,
        "rps": sum(part["rps"] for part in parts),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "client_processes": processes,
        **paired_p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway_overhead.json")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help="load client processes at concurrency 16 (default: 4 on 8+ cores, else 1)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not give each part its own cores")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    processes = args.client_processes or (4 if cpus >= 8 else 1)
    layout = Layout.for_machine(cpus, processes, not args.no_pin)
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-bench-"))
    upstream, gateway, nginx = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(tmp / "state"),
        "SPARKSTACK_CONFIG_DIR": str(tmp / "config"),
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.stubs.fast_upstream", str(upstream), str(CHUNKS)],
            cwd=REPO, env=env, preexec_fn=pinned(layout.stub),
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
            preexec_fn=pinned(layout.gateway),
        ))  # fmt: skip
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / name).mkdir()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=nginx))
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(subprocess.Popen([nginx_bin, "-c", str(tmp / "nginx.conf")],
                                      preexec_fn=pinned(layout.nginx)))  # fmt: skip
        wait_http(f"http://127.0.0.1:{upstream}/v1/models")
        wait_http(f"http://127.0.0.1:{gateway}/health")
        wait_http(f"http://127.0.0.1:{nginx}/v1/models")
        targets = {
            "direct": (f"http://127.0.0.1:{upstream}/v1/chat/completions", None, procs[0]),
            "gateway": (f"http://127.0.0.1:{gateway}/v1/chat/completions", key, procs[1]),
            "nginx": (f"http://127.0.0.1:{nginx}/v1/chat/completions", None, procs[2]),
        }
        direct_url = targets["direct"][0]
        runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        for round_index in range(args.rounds):
            for mode in ("plain", "stream"):
                for name, (url, token, proc) in targets.items():
                    for concurrency in (16, 1):
                        cpu_before = tree_cpu(proc.pid)
                        # at concurrency 1 a proxy is measured in pairs with the direct URL
                        paired = direct_url if concurrency == 1 and name != "direct" else None
                        result = load(
                            url, concurrency, args.seconds, mode == "stream", token, layout, paired
                        )
                        # the server's own CPU per request (the stub's for direct)
                        result["server_cpu_us_per_request"] = round(
                            (tree_cpu(proc.pid) - cpu_before) / max(1, result["requests"]) * 1e6, 1
                        )
                        runs.setdefault(f"{name}/{mode}", {}).setdefault(
                            f"c{concurrency}", []
                        ).append(result)
                        print(f"round {round_index + 1} {name:8} {mode:6} c={concurrency:<3} "
                              f"{result['rps']:9.1f} req/s  p50 {result['p50_ms']:.3f} ms  "
                              f"cpu {result['server_cpu_us_per_request']:6.1f} us/req  "
                              f"errors {result['errors']}"
                              + (f"  direct alongside {result['paired_p50_ms']:.3f} ms"
                                 if paired else ""), flush=True)  # fmt: skip
        summary = summarize(runs)
        report = {
            "machine": {
                "cpus": cpus,
                "cpu": cpu_model(),
                "pinned": layout.stub is not None,
                "client_processes_c16": processes,
            },  # fmt: skip
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


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its children (nginx's worker)."""
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


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
        direct = runs[f"direct/{mode}"]
        direct_rps = median([r["rps"] for r in direct["c16"]])
        direct_p50 = median([r["p50_ms"] for r in direct["c1"]])
        for name in ("gateway", "nginx"):
            own = runs[f"{name}/{mode}"]
            rps = median([r["rps"] for r in own["c16"]])
            p50 = median([r["p50_ms"] for r in own["c1"]])
            # each round's pair was measured back to back: compare within rounds
            ratios = [o["rps"] / d["rps"] for o, d in zip(own["c16"], direct["c16"], strict=True)]
            # each proxy request at concurrency 1 was followed by one to the stub
            # itself, so the two p50s come from the same interval
            added = [
                o["p50_ms"] - o.get("paired_p50_ms", d["p50_ms"])
                for o, d in zip(own["c1"], direct["c1"], strict=True)
            ]
            # the same against the direct run of the round, for comparison
            unpaired = [
                o["p50_ms"] - d["p50_ms"] for o, d in zip(own["c1"], direct["c1"], strict=True)
            ]
            out[f"{name}/{mode}"] = {
                "rps_c16": round(rps, 1),
                "direct_rps_c16": round(direct_rps, 1),
                "throughput_ratio": round(median(ratios), 3),
                "p50_ms_c1": round(p50, 3),
                "direct_p50_ms_c1": round(direct_p50, 3),
                "added_p50_ms": round(median(added), 3),
                "added_p50_ms_vs_direct_run": round(median(unpaired), 3),
                "cpu_us_per_request_c16": median(
                    [r["server_cpu_us_per_request"] for r in own["c16"]]
                ),
                "stub_cpu_us_per_request_c16": median(
                    [r["server_cpu_us_per_request"] for r in direct["c16"]]
                ),
            }
    return out


if __name__ == "__main__":
    main()
