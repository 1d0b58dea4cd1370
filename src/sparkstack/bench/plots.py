"""PNG plots of one or several runs, overlaid: throughput, TTFT and end-to-end
latency against concurrency (or request rate, or the point when neither
varies), and the latency distribution. matplotlib is imported lazily with the
Agg backend, so nothing needs a display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sparkstack.bench.records import RequestRecord
from sparkstack.bench.summary import PointSummary, RunSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOTS = {
    "throughput.png": "Throughput vs load",
    "latency.png": "TTFT and end-to-end latency vs load",
    "latency_distribution.png": "Latency distribution",
}


def x_axis(runs: list[RunSummary]) -> tuple[str, list[list[float]], list[str]]:
    """The x axis shared by all runs: concurrency, rate, or the point's index."""
    points = [p for run in runs for p in run.points]
    for attr, name in (("concurrency", "concurrency"), ("rate", "request rate (req/s)")):
        values = [getattr(p, attr) for p in points]
        if all(v is not None for v in values) and len(set(values)) > 1:
            xs = [[float(getattr(p, attr)) for p in run.points] for run in runs]
            return name, xs, []
    labels = list(dict.fromkeys(p.label for p in points))
    xs = [[float(labels.index(p.label)) for p in run.points] for run in runs]
    return "point", xs, labels


def _series(points: list[PointSummary], metric: str, stat: str) -> list[float]:
    return [p.stat(metric, stat) or float("nan") for p in points]


def _style(ax: Axes, xlabel: str, ylabel: str, ticks: list[str], log_x: bool) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if ticks:
        ax.set_xticks(range(len(ticks)), ticks, rotation=20, ha="right", fontsize=8)
    elif log_x:
        ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)


def write_plots(
    folder: Path, runs: list[RunSummary], records: dict[str, list[RequestRecord]]
) -> list[Path]:
    """Write the three PNGs into ``folder``; ``records`` by run label (may be empty
    for imported runs: the distribution plot then uses the percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xlabel, xs, ticks = x_axis(runs)
    log_x = xlabel == "concurrency" and max(max(x) for x in xs if x) >= 8
    written: list[Path] = []

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run, x in zip(runs, xs, strict=True):
        left.plot(x, [p.output_token_throughput for p in run.points], marker="o", label=run.label)
        right.plot(x, [p.request_throughput for p in run.points], marker="o", label=run.label)
    ceilings = {run.decode_ceiling_tok_s for run in runs if run.decode_ceiling_tok_s}
    for ceiling in ceilings:
        left.axhline(
            ceiling, linestyle=":", color="grey", label=f"1-user decode ceiling {ceiling:g}"
        )
    _style(left, xlabel, "output tokens/s (all users)", ticks, log_x)
    _style(right, xlabel, "requests/s", ticks, log_x)
    fig.suptitle(PLOTS["throughput.png"])
    fig.tight_layout()
    written.append(folder / "throughput.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run, x in zip(runs, xs, strict=True):
        for ax, metric in ((left, "ttft_ms"), (right, "e2e_ms")):
            line = ax.plot(
                x, _series(run.points, metric, "p50"), marker="o", label=f"{run.label} p50"
            )
            ax.fill_between(
                x,
                _series(run.points, metric, "p50"),
                _series(run.points, metric, "p90"),
                alpha=0.15,
                color=line[0].get_color(),
                label=f"{run.label} p50-p90",
            )
            ax.plot(
                x,
                _series(run.points, metric, "p99"),
                linestyle="--",
                color=line[0].get_color(),
                label=f"{run.label} p99",
            )
    _style(left, xlabel, "time to first token (ms)", ticks, log_x)
    _style(right, xlabel, "end-to-end latency (ms)", ticks, log_x)
    fig.suptitle(PLOTS["latency.png"])
    fig.tight_layout()
    written.append(folder / "latency.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        rows = [r for r in records.get(run.label, []) if r.ok]
        for ax, metric in ((left, "ttft_ms"), (right, "e2e_ms")):
            values = sorted(
                float(getattr(r, metric)) for r in rows if getattr(r, metric) is not None
            )
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(
                    values, fractions, where="post", label=f"{run.label} ({len(values)} requests)"
                )
            else:  # imported runs: the percentiles they published, pooled over points
                qs = [
                    (q / 100, max(p.stat(metric, f"p{q}") or 0 for p in run.points))
                    for q in (50, 90, 95, 99)
                ]
                ax.plot(
                    [v for _, v in qs],
                    [f for f, _ in qs],
                    marker="o",
                    label=f"{run.label} (percentiles)",
                )
    for ax, name in ((left, "time to first token (ms)"), (right, "end-to-end latency (ms)")):
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(PLOTS["latency_distribution.png"] + " (all points)")
    fig.tight_layout()
    written.append(folder / "latency_distribution.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
