"""The bench checks itself, against stub servers (issue 16, "What it must show"
1-3; issue 19's bench items):

1. a client slowed by a CPU burner in its own process makes a point invalid, with
   the reason; the same run without it stays valid;
2. open loop against a server whose service time jumps mid-run: TTFT from the
   scheduled send shows the queueing that TTFT from the actual send hides;
3. ``bench compare --gate``: the same server twice -> no detectable change (exit
   0); the server 20% slower -> worse, interval excluding 0 (exit 1);
plus a CRLF-framed server timed right, and a 60 s duration run that never sends a
prompt twice."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from pathlib import Path

from sparkstack.bench.options import Checks, LengthDist, Point, Target
from sparkstack.bench.runner import print_table, run_bench, save_run
from tests.bench_stub import StubState, bench_stub_app
from tests.integration.conftest import StartStub
from tests.support import REPO


async def burn(stop: asyncio.Event) -> None:
    """Blocks the event loop 60 ms at a time: a client too busy to keep up."""
    while not stop.is_set():
        began = time.perf_counter()
        while time.perf_counter() - began < 0.06:
            pass
        await asyncio.sleep(0.002)


async def test_a_slowed_client_makes_its_point_invalid(
    start_stub: StartStub, tmp_path: Path
) -> None:
    url = await start_stub(bench_stub_app(StubState(delay=0.003)))
    target = Target(url=url + "/v1", model="stub")
    point = Point("c=2", LengthDist(10), LengthDist(8), concurrency=2, requests=40, warmup=1)
    normal = await run_bench(target, [point], tmp_path / "normal")
    (p,) = normal.summary.points
    assert p.valid and p.client is not None and not p.client.reasons
    assert normal.summary.calibration is not None
    assert normal.summary.calibration.requests_per_s > 0
    assert p.client.client_share is not None and 0 < p.client.client_share < 1
    stop = asyncio.Event()
    burner = asyncio.create_task(burn(stop))
    try:
        slowed = await run_bench(target, [point], tmp_path / "slowed")
    finally:
        stop.set()
        await burner
    (q,) = slowed.summary.points
    assert not q.valid and q.client is not None
    assert q.client.loop_lag_ms_p99 is not None and q.client.loop_lag_ms_p99 > 25
    assert any("event-loop lag p99" in reason for reason in q.client.reasons)
    save_run(slowed)  # the verdict reaches the JSON, the report and the console
    text = (tmp_path / "slowed" / "summary.json").read_text()
    assert '"valid": false' in text and "event-loop lag p99" in text
    assert "INVALID" in (tmp_path / "slowed" / "report.html").read_text()
    console = io.StringIO()
    print_table(slowed.summary, console)
    assert "INVALID c=2: event-loop lag p99" in console.getvalue()


async def test_from_schedule_ttft_shows_the_queueing_from_send_hides(
    start_stub: StartStub, tmp_path: Path
) -> None:
    # 25 req/s, at most one in flight; service 5 ms, then 60 ms from request 20 on
    # (> the 40 ms between arrivals): a queue builds up in front of the server
    state = StubState(first_delay=0.005, jump_after=21, jump_delay=0.06)
    url = await start_stub(bench_stub_app(state))
    point = Point("25 req/s c≤1", LengthDist(10), LengthDist(2), concurrency=1, rate=25.0,
                  arrival="constant", requests=60, warmup=0)  # fmt: skip
    result = await run_bench(Target(url=url + "/v1", model="stub"), [point], tmp_path / "run",
                             checks=Checks(calibrate=False))  # fmt: skip
    (p,) = result.summary.points
    sent, scheduled = p.metrics["ttft_ms"], p.metrics["ttft_sched_ms"]
    assert sent.p90 is not None and scheduled.p90 is not None
    assert sent.p90 < 150  # from the send, every answer looks like one service time
    assert scheduled.p90 > 3 * sent.p90 and scheduled.p90 > 300  # the queue, made visible
    rows = sorted(result.records, key=lambda r: r.index)
    early = [r.ttft_sched_ms or 0 for r in rows[:15]]
    late = [r.ttft_sched_ms or 0 for r in rows[-10:]]
    assert max(early) < 100 < min(late)  # it grows after the jump, not before
    assert p.valid  # the client kept its schedule: the wait was for the slot, not for it


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sparkstack", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_gate_same_server_passes_and_a_20_percent_slower_one_fails(
    start_stub: StartStub, tmp_path: Path
) -> None:
    same = await start_stub(bench_stub_app(StubState(first_delay=0.1, delay=0.02)))
    slow = await start_stub(bench_stub_app(StubState(first_delay=0.12, delay=0.024)))
    for name, url in (("a", same), ("b", same), ("slow", slow)):
        code, text = await cli("bench", url, "--model", "stub", "--concurrency", "2",
                               "--requests", "40", "--output-tokens", "8", "--no-calibrate",
                               "--out", str(tmp_path / name))  # fmt: skip
        assert code == 0, text
    gate = ["--gate", "--metric", "ttft_ms:p90", "--metric", "e2e_ms:p90",
            "--max-regression", "5%"]  # fmt: skip
    code, text = await cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "b"), *gate)
    assert code == 0, text
    assert text.count("no detectable change") == 2 and "gate: pass" in text, text
    code, text = await cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "slow"), *gate)
    assert code == 1, text
    assert "gate: FAIL" in text and text.count("worse  REGRESSION") == 2, text
    intervals = re.findall(r"\[([+-][\d.]+)%, ([+-][\d.]+)%\]", text)
    assert len(intervals) == 2
    for low, high in intervals:
        assert 5 < float(low) < 20 < float(high) + 8  # excludes 0, holds about +20%


async def test_crlf_framed_server_is_timed_per_event(start_stub: StartStub, tmp_path: Path) -> None:
    url = await start_stub(bench_stub_app(StubState(delay=0.02, crlf=True)))
    point = Point("c=1", LengthDist(10), LengthDist(5), concurrency=1, requests=4, warmup=0)
    result = await run_bench(Target(url=url + "/v1", model="stub"), [point], tmp_path / "run",
                             checks=Checks(calibrate=False))  # fmt: skip
    for r in result.records:
        assert r.ok and r.completion_tokens == 5 and r.token_events == 5
        assert r.ttft_ms is not None and r.e2e_ms is not None
        assert 15 < r.ttft_ms < 60 and r.e2e_ms - r.ttft_ms > 4 * 15  # not TTFT = E2E
        assert all(gap > 10 for gap in r.chunk_gaps_ms) and (r.itl_ms or 0) > 15


async def test_a_60_s_duration_run_sends_no_prompt_twice(
    start_stub: StartStub, tmp_path: Path
) -> None:
    state = StubState()
    url = await start_stub(bench_stub_app(state))
    point = Point("c=4 for 60 s", LengthDist(16), LengthDist(2), concurrency=4, duration=60.0,
                  warmup=1)  # fmt: skip
    result = await run_bench(Target(url=url + "/v1", model="stub"), [point], tmp_path / "run",
                             checks=Checks(calibrate=False))  # fmt: skip
    (p,) = result.summary.points
    assert p.requests_sent > 2 * 256  # well past the first batch of prompts
    assert len(state.prompts) == len(set(state.prompts)), "a prompt was sent twice"
    assert len(state.prompts) == p.requests_sent + 2  # + the field probe and the warm-up
