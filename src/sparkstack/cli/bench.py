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
def run_cmd(url: str, model: str, concurrency: str | None, rate: float | None, arrival: str,
            requests: int | None, duration: float | None, warmup: int | None,
            input_tokens: str | None, output_tokens: str | None, endpoint: str, api_key: str | None,
            tokenizer: str | None, scenario: str | None, out: Path | None, label: str | None,
            timeout: float, seed: int | None) -> None:  # fmt: skip
    """Benchmark URL (http://HOST:PORT, with or without /v1) with model M."""
    from sparkstack.bench.options import (
        LengthDist,
        Point,
        Target,
        normalise_url,
        parse_concurrency,
    )  # fmt: skip
    from sparkstack.bench.runner import print_table, run_bench, save_run
    from sparkstack.bench.scenarios import scenario_points

    try:
        target = Target(
            url=normalise_url(url), model=model, endpoint=endpoint,
            api_key=api_key or os.environ.get("SPARKSTACK_API_KEY")
            or os.environ.get("OPENAI_API_KEY"),
            timeout=timeout, tokenizer=tokenizer,
            seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
        )  # fmt: skip
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
        result = asyncio.run(run_bench(target, points, folder, scenario, label or ""))
        save_run(result)
    except SparkstackError as exc:
        _fail(exc)
    print_table(result.summary)
    click.echo(f"run folder: {folder}  (report.html, summary.json, requests.csv, *.png)")


def _plot_or_compare(sources: tuple[Path, ...], labels: tuple[str, ...], out: Path | None,
                     name: str) -> None:  # fmt: skip
    from sparkstack.bench.compare import compare

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
def compare_cmd(runs: tuple[Path, ...], labels: tuple[str, ...], out: Path | None) -> None:
    """Overlay RUNS (sparkstack run folders, aiperf or genai-perf exports) and print
    the ratio of each to the first."""
    _plot_or_compare(runs, labels, out, "compare")


@bench.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", multiple=True)
@click.option("--out", type=click.Path(path_type=Path), help="Folder for plots and report.")
def plot_cmd(runs: tuple[Path, ...], labels: tuple[str, ...], out: Path | None) -> None:
    """Plots and report.html for RUNS (ours, or aiperf / genai-perf exports)."""
    _plot_or_compare(runs, labels, out, "plot")
