"""Is watching cheap? The gateway (auth on) in front of the fast stub upstream
carries closed-loop load (concurrency 16, streamed); rounds alternate between
no watchers and watchers polling ``GET /admin/status`` once a second each, as
``sparkstack top`` and an open /ui page do (default: one of each). Reports the
gateway's requests/s both ways (median over rounds) and the status document's
latency under load (p50, p95, seen by the watchers).

Load on a shared 2-core machine swings more than 5% between runs, so the script
also measures what one poll costs the gateway's loop, deterministically:
building and encoding the status document of a 2-model stack, in process
(``--micro-only``: just that, written to ``status_document_cost.json``).

usage: python -m benchmarks.status_polling [--seconds S] [--rounds N] [--watchers N] [--out FILE]
       python -m benchmarks.status_polling --micro-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from benchmarks.gateway_overhead import CHUNKS, load, wait_http
from sparkstack.supervisor.ports import free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


async def watch(url: str, key: str, watchers: int, stop: threading.Event) -> list[float]:
    """``watchers`` pollers, each GET /admin/status once a second; latencies in ms."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:

        async def poller(offset: float) -> None:
            await asyncio.sleep(offset)
            while not stop.is_set():
                started = time.perf_counter()
                async with session.get(url + "/admin/status", headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))

        await asyncio.gather(*(poller(i / watchers) for i in range(watchers)))
    return latencies


def document_cost(calls: int = 2000) -> dict[str, float]:
    """Microseconds to build and encode the status document (cache bypassed) of a
    2-model stack with a minute of samples, median of ``calls``."""
    import aiohttp as _aiohttp

    from sparkstack.settings import Settings
    from sparkstack.stack import load_stack_text
    from sparkstack.supervisor import Supervisor
    from sparkstack.telemetry.hub import Telemetry
    from sparkstack.telemetry.window import ModelCounters, Sample

    stack = load_stack_text(
        "models:\n  a:\n    engine: external\n    url: http://127.0.0.1:9\n"
        "  b:\n    engine: external\n    url: http://127.0.0.1:9\n",
        "bench",
    )

    async def build() -> list[float]:
        async with _aiohttp.ClientSession() as session:
            tmp = Path(tempfile.mkdtemp())
            supervisor = Supervisor(stack, Settings(home=tmp, state_dir=tmp), session)
            telemetry = Telemetry(supervisor.models)
            for second in range(61):
                counters = ModelCounters(requests=second * 10, generation_tokens=second * 100.0)
                telemetry.window.add(
                    Sample(at=float(second), models={"a": counters, "b": counters})
                )
            for n in range(60):
                telemetry.events.add("a", f"event{n}")
            out = []
            for _ in range(calls):
                telemetry._cache = None
                started = time.perf_counter()
                telemetry.document_bytes()
                out.append((time.perf_counter() - started) * 1e6)
            return out

    samples = sorted(asyncio.run(build()))
    return {
        "document_us_p50": round(statistics.median(samples), 1),
        "document_us_p95": round(samples[int(0.95 * (len(samples) - 1))], 1),
    }


def create_keys(env: dict[str, str]) -> tuple[str, str]:
    def create(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "sparkstack", "keys", "create", *args, "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        ).stdout.strip()

    return create("bench"), create("ops", "--admin")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "status_polling.json")
    parser.add_argument("--micro-only", action="store_true")
    args = parser.parse_args()
    cost = document_cost()
    print(json.dumps(cost), flush=True)
    if args.micro_only:
        out = RESULTS / "status_document_cost.json"
        out.write_text(json.dumps({"machine": {"cpus": os.cpu_count()}, **cost}, indent=2) + "\n")
        return
    tmp = Path(tempfile.mkdtemp(prefix="sparkstack-status-bench-"))
    upstream, gateway = free_port(), free_port()
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(tmp / "state"),
        "SPARKSTACK_CONFIG_DIR": str(tmp / "config"),
        "PYTHONPATH": str(REPO),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.stubs.fast_upstream",
                    str(upstream),
                    str(CHUNKS),
                ],
                cwd=REPO,
                env=env,
            )
        )
        key, admin = create_keys(env)
        stack = tmp / "stack.yaml"
        stack.write_text(
            f"models:\n  stub:\n    engine: external\n    url: http://127.0.0.1:{upstream}\n"
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sparkstack",
                    "up",
                    str(stack),
                    "--listen",
                    f"127.0.0.1:{gateway}",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base = f"http://127.0.0.1:{gateway}"
        wait_http(f"http://127.0.0.1:{upstream}/v1/models")
        wait_http(base + "/health")
        wait_http(base + "/ui")
        chat = base + "/v1/chat/completions"
        runs: dict[str, list[float]] = {"without": [], "with": []}
        status_ms: list[float] = []
        for round_index in range(args.rounds):
            order = ("without", "with") if round_index % 2 == 0 else ("with", "without")
            for condition in order:
                stop = threading.Event()
                seen: list[float] = []
                watcher = None
                if condition == "with":

                    def run_watchers(out: list[float] = seen, flag: threading.Event = stop) -> None:
                        out.extend(asyncio.run(watch(base, admin, args.watchers, flag)))

                    watcher = threading.Thread(target=run_watchers)
                    watcher.start()
                    time.sleep(1.0)  # the watchers are polling before the load starts
                result = load(chat, args.concurrency, args.seconds, True, key)
                stop.set()
                if watcher is not None:
                    watcher.join()
                    status_ms += seen
                runs[condition].append(result["rps"])
                extra = (
                    f"  status p50 {statistics.median(seen):.2f} ms ({len(seen)})" if seen else ""
                )
                print(
                    f"round {round_index + 1} {condition:7} {result['rps']:9.1f} req/s  "
                    f"errors {result['errors']}{extra}",
                    flush=True,
                )
        without = statistics.median(runs["without"])
        with_watchers = statistics.median(runs["with"])
        status_ms.sort()
        summary = {
            "rps_without_watchers": round(without, 1),
            "rps_with_watchers": round(with_watchers, 1),
            "throughput_change_pct": round(100 * (with_watchers - without) / without, 2),
            "status_p50_ms": round(statistics.median(status_ms), 3),
            "status_p95_ms": round(status_ms[int(0.95 * (len(status_ms) - 1))], 3),
            "status_samples": len(status_ms),
            **cost,
        }
        report = {
            "machine": {"cpus": os.cpu_count()},
            "load": {
                "concurrency": args.concurrency,
                "streamed": True,
                "chunks_per_stream": CHUNKS,
            },
            "watchers": args.watchers,
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


if __name__ == "__main__":
    main()
