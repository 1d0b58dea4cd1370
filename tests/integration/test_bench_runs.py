"""`sparkstack bench` against stub servers: a server that fails some requests
(the failures are counted and kept apart, the rest of the statistics stay right),
load modes, and `bench compare` / `bench plot` making plots and the ratio table."""

from __future__ import annotations

import asyncio
import csv
import statistics
import sys
from pathlib import Path

import pytest

from sparkstack.bench.options import LengthDist, Point, Target
from sparkstack.bench.records import read_requests_csv
from sparkstack.bench.runner import BenchError, run_bench, save_run
from sparkstack.bench.summary import RunSummary
from sparkstack.gateway.keys import KeyStore
from tests.bench_stub import StubState, bench_stub_app
from tests.integration.conftest import StartGateway, StartStub
from tests.support import REPO

PNG = b"\x89PNG\r\n\x1a\n"


async def sparkstack(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sparkstack",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_failed_requests_are_reported_and_kept_out_of_the_latencies(
    start_stub: StartStub, tmp_path: Path
) -> None:
    state = StubState(delay=0.002, faults=True)
    url = await start_stub(bench_stub_app(state))
    point = Point("c=4", LengthDist(20), LengthDist(8), concurrency=4, requests=40, warmup=0)
    result = await run_bench(Target(url=url + "/v1", model="stub"), [point], tmp_path / "run")
    save_run(result)
    summary = RunSummary.read(tmp_path / "run" / "summary.json")
    (p,) = summary.points
    measured = state.kinds[1:]  # the first request is the field probe
    assert p.requests_sent == 40 == len(measured)
    assert p.errors == {"http_500": measured.count("http_500"), "broken": measured.count("cut")}
    assert p.requests_ok == measured.count("ok") == 24
    assert any("overloaded, try later" in e for e in p.error_examples)
    assert any(
        "8 of 40 requests failed" in w or "16 of 40 requests failed" in w for w in summary.warnings
    )
    rows = read_requests_csv(tmp_path / "run" / "requests.csv")
    ok = [r for r in rows if r.ok]
    assert len(rows) == 40 and len(ok) == 24
    assert all(r.error_kind in ("http_500", "broken") and r.error for r in rows if not r.ok)
    assert p.metrics["ttft_ms"].n == 24 and p.metrics["e2e_ms"].n == 24
    assert p.stat("ttft_ms") == pytest.approx(statistics.fmean(r.ttft_ms or 0 for r in ok))
    assert p.stat("completion_tokens") == 8  # from usage, failures excluded
    assert p.output_token_throughput == pytest.approx(24 * 8 / p.duration_s)
    assert p.request_throughput == pytest.approx(24 / p.duration_s)


async def test_rate_and_duration_modes(start_stub: StartStub, tmp_path: Path) -> None:
    url = await start_stub(bench_stub_app(StubState()))
    target = Target(url=url + "/v1", model="stub", endpoint="completions")
    points = [
        Point(
            "20 req/s",
            LengthDist(10),
            LengthDist(4),
            concurrency=None,
            rate=20.0,
            arrival="constant",
            requests=20,
            warmup=0,
        ),
        Point(
            "c=2 for 1 s",
            LengthDist(10, 3),
            LengthDist(4, 1),
            concurrency=2,
            duration=1.0,
            warmup=1,
        ),
    ]
    result = await run_bench(target, points, tmp_path / "run")
    rate, timed = result.summary.points
    starts = sorted(r.start_s for r in result.records if r.point == "20 req/s")
    assert rate.requests_ok == 20
    assert starts[-1] == pytest.approx(19 / 20, abs=0.05)  # absolute schedule, no drift
    assert rate.stat("send_lag_ms", "p99") is not None
    assert (
        timed.requests_ok > 10
        and max(r.start_s for r in result.records if r.point == "c=2 for 1 s") < 1.0
    )
    assert {r.output_tokens_requested for r in result.records if r.point == "c=2 for 1 s"} != {4}


async def test_compare_and_plot(start_stub: StartStub, tmp_path: Path) -> None:
    fast = await start_stub(bench_stub_app(StubState(delay=0.001)))
    slow = await start_stub(bench_stub_app(StubState(delay=0.004)))
    for name, url in (("fast", fast), ("slow", slow)):
        await sparkstack(
            "bench",
            url,
            "--model",
            "stub",
            "--concurrency",
            "1,4",
            "--requests",
            "12",
            "--output-tokens",
            "10",
            "--out",
            str(tmp_path / name),
        )
    out = tmp_path / "cmp"
    text = await sparkstack(
        "bench",
        "compare",
        str(tmp_path / "fast"),
        str(tmp_path / "slow"),
        "--labels",
        "Fast 20B",
        "--labels",
        "Brain 120B",
        "--out",
        str(out),
    )
    assert "Brain 120B / Fast 20B" in text
    fast_run = RunSummary.read(tmp_path / "fast" / "summary.json")
    slow_run = RunSummary.read(tmp_path / "slow" / "summary.json")
    with (out / "comparison.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    c4 = {(r["metric"], r["run"]): r for r in rows if r["point"] == "c=4"}
    want = slow_run.points[1].output_token_throughput / fast_run.points[1].output_token_throughput
    assert float(c4[("output tok/s", "Brain 120B")]["ratio_to_first"]) == pytest.approx(want)
    assert want < 0.8  # the slow stub is slower, and the table says so
    for png in ("throughput.png", "latency.png", "latency_distribution.png"):
        assert (out / png).read_bytes().startswith(PNG)
    report = (out / "report.html").read_text()
    assert "Fast 20B" in report and "data:image/png;base64," in report and "Ratios to" in report
    # ours beside aiperf's and genai-perf's exports, in one comparison
    fixtures = REPO / "tests" / "fixtures" / "bench"
    mixed = tmp_path / "mixed"
    text = await sparkstack(
        "bench",
        "compare",
        str(tmp_path / "fast"),
        str(fixtures / "aiperf-run"),
        str(fixtures / "genai-perf-sweep"),
        "--out",
        str(mixed),
    )
    assert "aiperf-run / fast" in text and (mixed / "latency.png").read_bytes().startswith(PNG)
    await sparkstack(
        "bench", "plot", str(fixtures / "genai-perf-sweep"), "--out", str(tmp_path / "plot")
    )
    assert (tmp_path / "plot" / "throughput.png").read_bytes().startswith(PNG)
    assert not (tmp_path / "plot" / "comparison.csv").exists()


async def test_through_a_gateway_with_keys(
    start_stub: StartStub, start_test_gateway: StartGateway, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "config" / "keys.json")
    _, secret = store.create("bench")
    gateway = await start_test_gateway(await start_stub(bench_stub_app(StubState())), keys=store)
    point = Point("c=2", LengthDist(10), LengthDist(5), concurrency=2, requests=6, warmup=0)
    with pytest.raises(BenchError, match="wants an API key; pass --api-key"):
        await run_bench(Target(url=gateway + "/v1", model="stub"), [point], tmp_path / "no")
    target = Target(url=gateway + "/v1", model="stub-alias", api_key=secret)
    result = await run_bench(target, [point], tmp_path / "yes")
    (p,) = result.summary.points
    assert p.requests_ok == 6 and result.summary.gateway
    assert p.server is not None and p.server.samples >= 1  # the gateway's /metrics was read
    with pytest.raises(BenchError, match="has no model 'nope'; it serves: stub, stub-alias"):
        await run_bench(Target(url=gateway + "/v1", model="nope", api_key=secret), [point],
                        tmp_path / "none")  # fmt: skip
