"""The `sparkstack bench` command group: `bench URL --model M ...` runs a benchmark;
`bench compare` and `bench plot` read runs (ours, aiperf's, genai-perf's)."""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import re
from pathlib import Path

import click

from sparkstack.bench.compare import compare
from sparkstack.bench.gate import gate as run_gate
from sparkstack.bench.gate import parse_regression
from sparkstack.bench.options import (
    BenchOptionError,
    Checks,
    LengthDist,
    Point,
    Sweep,
    Target,
    normalise_url,
    parse_concurrency,
    parse_slo,
)
from sparkstack.bench.runner import print_table, run_bench, save_run
from sparkstack.bench.scenarios import scenario_points
from sparkstack.cli.errors import fail as _fail
from sparkstack.errors import SparkstackError

_SUBCOMMANDS = ("run", "compare", "plot")


class BenchGroup(click.Group):
    """``bench URL ...`` means ``bench run URL ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in _SUBCOMMANDS and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=BenchGroup)
def bench() -> None:
    """Benchmark any OpenAI-compatible endpoint (ours or not), and plot or compare
    runs, including aiperf and genai-perf exports.

    \b
      sparkstack bench http://127.0.0.1:8080 --model smol --concurrency 1,2,4,8
      sparkstack bench URL --model M --scenario five-scenario
      sparkstack bench compare RUN_A RUN_B --labels "Fast 20B" "Brain 120B"
      sparkstack bench plot artifacts/aiperf-sweep/
    """


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


@bench.command("run")
@click.argument("url")
@click.option("--model", "-m", required=True, help="Model name the server knows.")
@click.option("--concurrency", "-c", help="Users in a closed loop, a list: 1,2,4,8.")
@click.option("--rate", type=float, help="Open loop: requests per second.")
@click.option(
    "--arrival",
    type=click.Choice(["poisson", "constant"]),
    default="poisson",
    show_default=True,
    help="Arrival pattern with --rate.",
)
@click.option("--requests", "-n", type=int, help="Measured requests per point.")
@click.option("--duration", type=float, help="Seconds per point (instead of --requests).")
@click.option("--warmup", type=int, help="Warm-up requests per point, not measured [1].")
@click.option("--input-tokens", help="MEAN[,STDDEV] [128; a scenario's own without it].")
@click.option("--output-tokens", help="MEAN[,STDDEV] [128; a scenario's own without it].")
@click.option(
    "--endpoint", type=click.Choice(["chat", "completions"]), default="chat", show_default=True
)
@click.option("--api-key", help="Bearer key (default: $SPARKSTACK_API_KEY or $OPENAI_API_KEY).")
@click.option("--tokenizer", help="tokenizer.json, a model folder, or a cached HF model id.")
@click.option("--scenario", help="interactive, batch-scaling, long-context, five-scenario.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [bench-runs/...].")
@click.option("--label", help="Name of the run in plots and comparisons.")
@click.option(
    "--timeout",
    type=float,
    default=600,
    show_default=True,
    help="Seconds without a byte before a request counts as failed.",
)
@click.option(
    "--seed",
    type=int,
    help="Prompt seed; a new one each run unless given (so no "
    "run finds the last run's prompts in the prefix cache).",
)
@click.option("--no-calibrate", is_flag=True, help="Skip the client's null-server calibration.")
@click.option(
    "--max-loop-lag-ms",
    type=float,
    default=25.0,
    show_default=True,
    help="A point whose event-loop lag p99 passes this is invalid.",
)
@click.option(
    "--max-send-lag-ms",
    type=float,
    default=25.0,
    show_default=True,
    help="An open-loop point whose client send lag p99 passes this is invalid.",
)
@click.option(
    "--slo",
    multiple=True,
    help="Per-request bound METRIC=MS (ttft_ms, tpot_ms, itl_ms, e2e_ms, "
    "ttft_sched_ms, e2e_sched_ms); repeat. Gives goodput.",
)
@click.option(
    "--slo-attainment",
    type=float,
    default=0.9,
    show_default=True,
    help="Share of requests that must meet the SLO for it to hold at a point.",
)
@click.option(
    "--sweep-until-saturation",
    is_flag=True,
    help="Double concurrency (or --rate) until throughput stops growing or the "
    "SLO breaks; report the knee and goodput.",
)
@click.option(
    "--sweep-max",
    type=float,
    default=256,
    show_default=True,
    help="Highest concurrency (or rate) a sweep may reach.",
)
def run_cmd(
    url: str,
    model: str,
    concurrency: str | None,
    rate: float | None,
    arrival: str,
    requests: int | None,
    duration: float | None,
    warmup: int | None,
    input_tokens: str | None,
    output_tokens: str | None,
    endpoint: str,
    api_key: str | None,
    tokenizer: str | None,
    scenario: str | None,
    out: Path | None,
    label: str | None,
    timeout: float,
    seed: int | None,
    no_calibrate: bool,
    max_loop_lag_ms: float,
    max_send_lag_ms: float,
    slo: tuple[str, ...],
    slo_attainment: float,
    sweep_until_saturation: bool,
    sweep_max: float,
) -> None:
    """Benchmark URL (http://HOST:PORT, with or without /v1) with model M."""
    try:
        target = Target(
            url=normalise_url(url),
            model=model,
            endpoint=endpoint,
            api_key=api_key
            or os.environ.get("SPARKSTACK_API_KEY")
            or os.environ.get("OPENAI_API_KEY"),
            timeout=timeout,
            tokenizer=tokenizer,
            seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
        )
        if requests is None and duration is None:
            requests = 50 if scenario is None else None
        if scenario:
            points = [
                p.with_overrides(
                    requests=requests, duration=duration, warmup=warmup,
                    output=LengthDist.parse(output_tokens, "--output-tokens")
                    if output_tokens else None,
                    input=LengthDist.parse(input_tokens, "--input-tokens")
                    if input_tokens else None,
                )
                for p in scenario_points(scenario)
            ]  # fmt: skip
        else:
            inputs = LengthDist.parse(input_tokens or "128", "--input-tokens")
            outputs = LengthDist.parse(output_tokens or "128", "--output-tokens")
            levels: list[int | None] = list(parse_concurrency(concurrency)) if concurrency else []
            if not levels:
                levels = [None] if rate else [1]
            if sweep_until_saturation:
                levels = levels[:1]
            points = [
                Point(label=(f"c={c}" if rate is None else f"{rate:g} req/s")
                      + (f" c≤{c}" if rate is not None and c else ""),
                      input=inputs, output=outputs, concurrency=c, rate=rate, arrival=arrival,
                      requests=requests, duration=duration,
                      warmup=1 if warmup is None else warmup)
                for c in levels
            ]  # fmt: skip
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = out or Path("bench-runs") / f"{stamp}-{_slug(model)}-{_slug(scenario or 'sweep')}"
        checks = Checks(
            calibrate=not no_calibrate,
            max_loop_lag_ms=max_loop_lag_ms,
            max_send_lag_ms=max_send_lag_ms,
            slo=parse_slo(slo),
            slo_attainment=slo_attainment,
        )
        sweep = None
        if sweep_until_saturation:
            if scenario:
                raise BenchOptionError(
                    "--sweep-until-saturation makes its own points: leave out --scenario"
                )
            first = points[0]
            by = "rate" if first.rate else "concurrency"
            sweep = Sweep(by=by, start=float(first.rate or first.concurrency or 1), limit=sweep_max)
        result = asyncio.run(
            run_bench(target, points, folder, scenario, label or "", checks, sweep)
        )
        save_run(result)
    except SparkstackError as exc:
        _fail(exc)
    print_table(result.summary)
    click.echo(f"run folder: {folder}  (report.html, summary.json, requests.csv, *.png)")


def _plot_or_compare(sources: tuple[Path, ...], labels: tuple[str, ...], out: Path | None,
                     name: str) -> None:  # fmt: skip
    folder = out or Path("bench-runs") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    try:
        runs, table = compare(list(sources), list(labels), folder)
    except SparkstackError as exc:
        _fail(exc)
    if table:
        click.echo(table)
    for run in runs:
        click.echo(f"{run.label}: {run.tool}, {len(run.points)} points")
    click.echo(f"plots and report.html in {folder}")


@bench.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", multiple=True, help="One name per run (repeat, or list after it).")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for plots and report.")
@click.option(
    "--gate", is_flag=True, help="Judge B against A (bootstrap intervals); exit 1 on a regression."
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="METRIC:STAT to gate on, repeat [ttft_ms:p90 itl_ms:p50 e2e_ms:p90 output_tok_s:mean].",
)
@click.option(
    "--max-regression",
    default="0%",
    show_default=True,
    help="A worse verdict fails the gate only beyond this change, e.g. 5%.",
)
@click.option(
    "--noise-floor",
    default="3%",
    show_default=True,
    help="Run-to-run drift one run cannot show: a change counts only when its whole "
    "interval lies beyond it.",
)
def compare_cmd(
    runs: tuple[Path, ...],
    labels: tuple[str, ...],
    out: Path | None,
    gate: bool,
    metrics: tuple[str, ...],
    max_regression: str,
    noise_floor: str,
) -> None:
    """Overlay RUNS (sparkstack run folders, aiperf or genai-perf exports) and print
    the ratio of each to the first; with --gate, a verdict per metric for B vs A."""
    if not gate:
        _plot_or_compare(runs, labels, out, "compare")
        return
    try:
        verdicts, table = run_gate(
            list(runs),
            list(metrics),
            parse_regression(max_regression, "--max-regression"),
            parse_regression(noise_floor, "--noise-floor"),
        )
    except SparkstackError as exc:
        _fail(exc)
    click.echo(table)
    if any(v.regression for v in verdicts):
        raise SystemExit(1)


@bench.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", multiple=True)
@click.option("--out", type=click.Path(path_type=Path), help="Folder for plots and report.")
def plot_cmd(runs: tuple[Path, ...], labels: tuple[str, ...], out: Path | None) -> None:
    """Plots and report.html for RUNS (ours, or aiperf / genai-perf exports)."""
    _plot_or_compare(runs, labels, out, "plot")
