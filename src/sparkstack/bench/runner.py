"""Runs a benchmark from start to end: checks the server, picks a tokenizer,
probes which length-control fields the server accepts, calibrates the client
against a null server, runs each point (or sweeps until saturation), judges each
point's validity, and writes the run directory (requests.csv, summary.json/csv,
plots, report.html)."""

from __future__ import annotations

import asyncio
import datetime
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from sparkstack.bench.calibrate import Calibration, calibrate
from sparkstack.bench.client import BenchClient, Capture
from sparkstack.bench.compat import compat
from sparkstack.bench.jobs import Job, JobStream
from sparkstack.bench.load import make_body, run_point, warm_up
from sparkstack.bench.looplag import LoopLagMonitor
from sparkstack.bench.measure import measure
from sparkstack.bench.options import BenchOptionError, Checks, Point, Sweep, Target
from sparkstack.bench.progress import Progress
from sparkstack.bench.prompts import Tokenizer, build_prompts, local_tokenizer, server_tokenizer
from sparkstack.bench.records import RequestRecord, write_requests_csv
from sparkstack.bench.report import COLUMNS, cell, text_table, write_report
from sparkstack.bench.saturation import goodput, next_point, sweep_result
from sparkstack.bench.scenarios import fit_context
from sparkstack.bench.server_metrics import MetricsSampler, ServerInfo, server_info
from sparkstack.bench.steady import steady_state
from sparkstack.bench.summary import ClientServerSplit, PointSummary, RunSummary, summarise
from sparkstack.bench.validity import Thresholds, client_health, run_checks
from sparkstack.errors import SparkstackError

_POOL = 256
"""Prompts per batch in duration mode; more batches are built while it runs."""


class BenchError(SparkstackError):
    """The benchmark cannot run against this server as asked."""


@dataclass
class BenchResult:
    summary: RunSummary
    records: list[RequestRecord]
    folder: Path


async def _tokenizer(target: Target, client: BenchClient) -> Tokenizer | None:
    if target.tokenizer:
        found = local_tokenizer(target.tokenizer)
        if found is None:
            raise BenchOptionError(
                f"--tokenizer {target.tokenizer!r}: no tokenizer.json there or in the Hugging "
                "Face cache; give a model folder, a tokenizer.json, or a cached model id"
            )
        return found
    return await server_tokenizer(
        client.pool, target.origin, target.model, target.headers
    ) or local_tokenizer(target.model)


async def _probe_fields(client: BenchClient, target: Target) -> tuple[list[str], list[str]]:
    """Which of min_tokens / ignore_eos the server takes (strict servers reject
    unknown fields with 400); a request that fails otherwise ends the run early
    with the server's own words."""
    notes: list[str] = []
    for fields in (["min_tokens", "ignore_eos"], ["ignore_eos"], []):
        body = make_body(target, "Say hello.", 2, fields)
        capture = await client.send(target.path, body, Capture(t_sched_ns=time.perf_counter_ns()))
        record = measure(capture, "probe", 0, capture.t_send_ns, "", 0, 2)
        # "empty": accepted, but the two tokens were special ones (ignore_eos lets
        # a model emit its end token again), which decode to no text
        if record.ok or record.error_kind == "empty":
            if len(fields) < 2:
                dropped = {"min_tokens", "ignore_eos"} - set(fields)
                notes.append(
                    f"the server refused {', '.join(sorted(dropped))}: outputs may "
                    "stop before --output-tokens (early end of sequence)"
                )
            return fields, notes
        if record.http_status in (401, 403):
            raise BenchError(
                f"{target.url}{target.path} refused the key ({record.error}): pass "
                "--api-key KEY (or set OPENAI_API_KEY)"
            )
        if record.http_status == 404:
            raise BenchError(
                f"{target.url}{target.path}: {record.error or 'not found'}; check "
                "--model and --endpoint"
            )
        if record.http_status != 400:
            notes.append(
                f"the probe request failed ({record.error_kind}: {record.error}); running anyway"
            )
            return fields, notes
    raise BenchError(f"{target.url}{target.path} rejects every request: {record.error}")


async def _jobs(
    target: Target,
    point: Point,
    tokenizer: Tokenizer | None,
    fields: list[str],
    count: int,
    seed: int,
) -> list[Job]:
    """``count`` requests with sampled lengths, their bodies encoded."""
    rng = random.Random(seed)
    inputs = [point.input.sample(rng) for _ in range(count)]
    outputs = [point.output.sample(rng) for _ in range(count)]
    prompts = await build_prompts(tokenizer, inputs, seed)
    return [
        Job(make_body(target, text, out, fields), text, measured if measured > 0 else wanted, out)
        for (text, measured), wanted, out in zip(prompts, inputs, outputs, strict=True)
    ]


def _warnings(point: PointSummary, records: list[RequestRecord]) -> list[str]:
    notes: list[str] = []
    if point.requests_failed:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(point.errors.items()))
        notes.append(
            f"{point.label}: {point.requests_failed} of {point.requests_sent} "
            f"requests failed ({kinds}); they are kept out of the latency figures"
        )
    if point.osl_sources.get("events"):
        notes.append(
            f"{point.label}: the server sent no usage for "
            f"{point.osl_sources['events']} requests; their output tokens are the "
            "count of token-bearing chunks"
        )
    ok = [r for r in records if r.ok and r.completion_tokens is not None]
    if ok:
        got = sum(r.completion_tokens or 0 for r in ok) / len(ok)
        wanted = sum(r.output_tokens_requested for r in ok) / len(ok)
        if abs(got - wanted) > max(2.0, 0.05 * wanted):
            notes.append(
                f"{point.label}: {got:.1f} output tokens on average for {wanted:.1f} "
                "asked (the model ended early or the server capped it)"
            )
    return notes


@dataclass
class _Context:
    """What every point of a run shares."""

    client: BenchClient
    target: Target
    tokenizer: Tokenizer | None
    fields: list[str]
    sampler: MetricsSampler | None
    checks: Checks
    calibration: Calibration | None


async def run_bench(
    target: Target,
    points: list[Point],
    folder: Path,
    scenario: str | None = None,
    label: str = "",
    checks: Checks | None = None,
    sweep: Sweep | None = None,
) -> BenchResult:
    summary = RunSummary(
        label=label or folder.name,
        created=datetime.datetime.now(datetime.UTC).isoformat(),
        url=target.url,
        model=target.model,
        endpoint=target.endpoint,
        seed=target.seed,
        scenario=scenario,
    )
    checks = checks or Checks()
    client = BenchClient(target.url, target.headers, target.timeout)
    records: list[RequestRecord] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        try:
            info = await server_info(session, target.url, target.model, target.headers)
            _check_server(target, info)
            summary.gateway = info.gateway
            summary.decode_ceiling_tok_s = info.decode_ceiling_tok_s
            points, notes = fit_context(points, info.max_model_len)
            summary.warnings += notes
            tokenizer = await _tokenizer(target, client)
            summary.tokenizer = tokenizer.source if tokenizer else "none"
            if tokenizer is None:
                summary.warnings.append(
                    "no tokenizer (pass --tokenizer, or use a server with "
                    "/tokenize): prompt lengths are approximate; "
                    "usage.prompt_tokens is exact"
                )
            fields, notes = await _probe_fields(client, target)
            summary.fields_sent = fields
            summary.warnings += notes
            sampler = (
                MetricsSampler(session, target.origin, info.canonical_model, target.headers)
                if info.gateway
                else None
            )
            if checks.calibrate:
                summary.calibration = await calibrate()
            context = _Context(
                client, target, tokenizer, fields, sampler, checks, summary.calibration
            )
            number = 0
            point: Point | None = points[0] if points else None
            while point is not None:
                result = await _run_one(context, point, target.seed + number)
                summary.points.append(result[0])
                summary.warnings += _warnings(result[0], result[1])
                records += result[1]
                number += 1
                if sweep is None:
                    point = points[number] if number < len(points) else None
                else:
                    point = next_point(sweep, checks, summary.points, point)
            if sweep is not None:
                summary.sweep = sweep_result(sweep, checks, summary.points)
        finally:
            await client.close()
    # closed transports release their sockets on the next loop pass; give it one
    # so a caller that ends the loop right away leaks nothing
    await asyncio.sleep(0)
    return BenchResult(summary, records, folder)


def save_run(result: BenchResult) -> None:
    """Write the run directory (after the event loop is done: plotting is slow)."""
    result.folder.mkdir(parents=True, exist_ok=True)
    write_requests_csv(result.folder / "requests.csv", result.records)
    result.summary.write(result.folder)
    write_report(result.folder, [result.summary], {result.summary.label: result.records})


def _check_server(target: Target, info: ServerInfo) -> None:
    if info.status in (401, 403):
        raise BenchError(
            f"{target.url}/models answered {info.status}: the server wants an API key; pass "
            "--api-key KEY (or set SPARKSTACK_API_KEY)"
        )
    if not info.reachable:
        raise BenchError(
            f"no OpenAI-compatible server answers at {target.url}/models: start "
            "it (sparkstack up) or fix the URL"
        )
    if not info.model_known and info.models:
        raise BenchError(
            f"the server at {target.url} has no model {target.model!r}; it serves: "
            f"{', '.join(info.models)} (pass one with --model)"
        )


async def _job_stream(context: _Context, point: Point, seed: int) -> tuple[JobStream, list[Job]]:
    """The point's requests and its warm-up requests (built apart, sent first)."""
    count = point.requests or _POOL
    built = await _jobs(
        context.target, point, context.tokenizer, context.fields, count + point.warmup, seed
    )
    first, warm = built[:count], built[count:]
    if point.requests is not None:
        return JobStream(first), warm

    async def more(batch: int) -> list[Job]:
        return await _jobs(
            context.target,
            point,
            context.tokenizer,
            context.fields,
            _POOL,
            seed + 1_000_003 * batch,
        )

    return JobStream(first, more), warm


async def _run_one(
    context: _Context, point: Point, seed: int
) -> tuple[PointSummary, list[RequestRecord]]:
    client, target, sampler = context.client, context.target, context.sampler
    jobs, warm = await _job_stream(context, point, seed)
    await warm_up(client, target, warm)
    if sampler is not None:
        await sampler.start()
    monitor = LoopLagMonitor()
    monitor.start()
    try:
        with Progress(point.label, point.requests, point.duration) as progress:
            captured = await run_point(client, target, point, jobs, progress)
    finally:
        lags = await monitor.stop()
        await jobs.close()
    server = await sampler.stop() if sampler is not None else None
    records = [
        measure(
            capture,
            point.label,
            i,
            captured.started_ns,
            job.prompt,
            job.input_tokens,
            job.output_tokens,
        )
        for i, (job, capture) in enumerate(
            sorted(captured.captures, key=lambda jc: jc[1].t_send_ns)
        )
    ]
    summary = PointSummary(
        label=point.label,
        concurrency=point.concurrency,
        rate=point.rate,
        arrival=point.arrival if point.rate else None,
        input_tokens=str(point.input),
        output_tokens=str(point.output),
        server=server,
    )
    summarise(summary, records)
    _judge(context, summary, records, lags)
    return summary, records


def _judge(
    context: _Context, point: PointSummary, records: list[RequestRecord], lags: list[float]
) -> None:
    """Validity, steady state, compat, client/server split and goodput of a point."""
    checks = context.checks
    limits = Thresholds(checks.max_loop_lag_ms, checks.max_send_lag_ms)
    point.client = client_health(point, records, lags, context.calibration, limits)
    point.valid = point.client.valid
    point.validity = run_checks(point, records, context.fields)
    point.steady = steady_state(records)
    point.compat, point.compat_scalars = compat(records)
    point.split = _split(point)
    if checks.slo:
        point.goodput = goodput(records, checks.slo, point.duration_s)


def _split(point: PointSummary) -> ClientServerSplit | None:
    server = point.server
    ttft = point.stat("ttft_ms")
    if server is None or server.engine_ttft_ms_mean is None or ttft is None:
        return None
    e2e = point.stat("e2e_ms")
    engine_e2e = server.engine_e2e_ms_mean
    return ClientServerSplit(
        client_ttft_ms_mean=ttft,
        engine_ttft_ms_mean=server.engine_ttft_ms_mean,
        ttft_outside_engine_ms=ttft - server.engine_ttft_ms_mean,
        client_e2e_ms_mean=e2e,
        engine_e2e_ms_mean=engine_e2e,
        e2e_outside_engine_ms=None if e2e is None or engine_e2e is None else e2e - engine_e2e,
        engine_requests=server.engine_requests or 0,
    )


def print_table(summary: RunSummary, out: TextIO | None = None) -> None:
    """The report's table, as text (the columns that fit a terminal)."""
    shown = [c for c in COLUMNS if c[0] not in _WIDE]
    rows = [["point", *(c[0] for c in shown)]]
    rows += [[p.label, *(cell(p, m, s) for _, m, s in shown)] for p in summary.points]
    stream = out or sys.stdout
    print(text_table(rows, left=0), file=stream)
    cal = summary.calibration
    if cal is not None:
        shares = ", ".join(
            f"{p.label} {100 * p.client.client_share:.1f}%"
            for p in summary.points
            if p.client is not None and p.client.client_share is not None
        )
        print(
            f"client ceiling (null server): {cal.requests_per_s:,.0f} req/s, "
            f"{cal.events_per_s:,.0f} events/s; used: {shares or '-'}",
            file=stream,
        )
    for point in summary.points:
        if not point.valid and point.client is not None:
            print(f"INVALID {point.label}: {'; '.join(point.client.reasons)}", file=stream)
    if summary.sweep is not None:
        sweep = summary.sweep
        print(
            f"sweep: {sweep.stop_reason}; knee at {sweep.knee_label or '-'}"
            + (
                f"; best goodput {sweep.best_goodput:.2f} req/s at {sweep.best_goodput_label}"
                if sweep.best_goodput is not None
                else ""
            ),
            file=stream,
        )
    for note in summary.warnings:
        print(f"note: {note}", file=stream)


_WIDE = {"TTFT mean", "ITL p99", "E2E mean"}
