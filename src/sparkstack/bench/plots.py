"""PNG plots of one or several runs, overlaid: throughput, TTFT and end-to-end
latency against concurrency (or request rate, or the point when neither
varies), and the latency distribution. matplotlib is imported lazily with the
Agg backend, so nothing needs a display."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    "saturation.png": "Sweep until saturation: the knee and goodput under the SLO",
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


_LATENCIES = (("ttft_ms", "time to first token (ms)"), ("e2e_ms", "end-to-end latency (ms)"))


@dataclass(frozen=True)
class _XAxis:
    label: str
    xs: list[list[float]]
    ticks: list[str]
    log: bool

    def style(self, ax: Axes, ylabel: str) -> None:
        _style(ax, self.label, ylabel, self.ticks, self.log)


def write_plots(
    folder: Path, runs: list[RunSummary], records: dict[str, list[RequestRecord]]
) -> list[Path]:
    """Write the three PNGs into ``folder``; ``records`` by run label (may be empty
    for imported runs: the distribution plot then uses the percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label, xs, ticks = x_axis(runs)
    axis = _XAxis(label, xs, ticks, label == "concurrency" and max(max(x) for x in xs if x) >= 8)

    def figure(name: str, draw: Callable[[Axes, Axes], None], title: str = "") -> Path:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        draw(left, right)
        fig.suptitle(PLOTS[name] + title)
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    swept = []
    if any(run.sweep for run in runs):
        swept.append(
            figure("saturation.png", lambda left, right: _saturation(left, right, runs, axis))
        )
    return swept + [
        figure("throughput.png", lambda left, right: _throughput(left, right, runs, axis)),
        figure("latency.png", lambda left, right: _latency(left, right, runs, axis)),
        figure("latency_distribution.png",
               lambda left, right: _distribution(left, right, runs, records), " (all points)"),
    ]  # fmt: skip


def _throughput(left: Axes, right: Axes, runs: list[RunSummary], axis: _XAxis) -> None:
    for run, x in zip(runs, axis.xs, strict=True):
        left.plot(x, [p.output_token_throughput for p in run.points], marker="o", label=run.label)
        right.plot(x, [p.request_throughput for p in run.points], marker="o", label=run.label)
    for ceiling in {run.decode_ceiling_tok_s for run in runs if run.decode_ceiling_tok_s}:
        left.axhline(
            ceiling, linestyle=":", color="grey", label=f"1-user decode ceiling {ceiling:g}"
        )
    for run, x in zip(runs, axis.xs, strict=True):
        goodputs = [p.goodput for p in run.points]
        if any(g is not None for g in goodputs):
            right.plot(
                x,
                [g if g is not None else float("nan") for g in goodputs],
                marker="s",
                linestyle="--",
                label=f"{run.label} goodput (SLO met)",
            )
        sweep = run.sweep
        if sweep is not None and sweep.knee_label is not None:
            at = next(i for i, p in enumerate(run.points) if p.label == sweep.knee_label)
            knee_x, knee_y = x[at], run.points[at].output_token_throughput
            left.axvline(knee_x, linestyle=":", color="red", alpha=0.6)
            left.plot(
                [knee_x],
                [knee_y],
                marker="*",
                markersize=16,
                color="red",
                linestyle="none",
                label=f"{run.label} knee ({sweep.knee_label})",
            )
    axis.style(left, "output tokens/s (all users)")
    axis.style(right, "requests/s")


def _saturation(left: Axes, right: Axes, runs: list[RunSummary], axis: _XAxis) -> None:
    for run, x in zip(runs, axis.xs, strict=True):
        if run.sweep is None:
            continue
        throughput = [p.output_token_throughput for p in run.points]
        left.plot(x, throughput, marker="o", label=f"{run.label} output tokens/s")
        right.plot(
            x,
            [p.request_throughput for p in run.points],
            marker="o",
            label=f"{run.label} requests/s",
        )
        if any(p.goodput is not None for p in run.points):
            slo = ", ".join(f"{k} ≤ {v:g}" for k, v in run.sweep.slo.items())
            right.plot(
                x,
                [p.goodput if p.goodput is not None else float("nan") for p in run.points],
                marker="s",
                linestyle="--",
                label=f"{run.label} goodput ({slo})",
            )
        if run.sweep.knee_label is not None:
            at = next(i for i, p in enumerate(run.points) if p.label == run.sweep.knee_label)
            for ax in (left, right):
                ax.axvline(x[at], linestyle=":", color="red", alpha=0.7)
            left.plot(
                [x[at]],
                [throughput[at]],
                marker="*",
                markersize=16,
                color="red",
                linestyle="none",
                label=f"knee: {run.sweep.knee_label}",
            )
    axis.style(left, "output tokens/s (all users)")
    axis.style(right, "requests/s")


def _latency(left: Axes, right: Axes, runs: list[RunSummary], axis: _XAxis) -> None:
    for run, x in zip(runs, axis.xs, strict=True):
        for ax, (metric, _) in zip((left, right), _LATENCIES, strict=True):
            p50 = _series(run.points, metric, "p50")
            color = ax.plot(x, p50, marker="o", label=f"{run.label} p50")[0].get_color()
            ax.fill_between(x, p50, _series(run.points, metric, "p90"), alpha=0.15,
                            color=color, label=f"{run.label} p50-p90")  # fmt: skip
            ax.plot(x, _series(run.points, metric, "p99"), linestyle="--", color=color,
                    label=f"{run.label} p99")  # fmt: skip
    for ax, (_, name) in zip((left, right), _LATENCIES, strict=True):
        axis.style(ax, name)


def _distribution(left: Axes, right: Axes, runs: list[RunSummary],
                  records: dict[str, list[RequestRecord]]) -> None:  # fmt: skip
    for run in runs:
        rows = [r for r in records.get(run.label, []) if r.ok]
        for ax, (metric, _) in zip((left, right), _LATENCIES, strict=True):
            _cdf(ax, run, rows, metric)
    for ax, (_, name) in zip((left, right), _LATENCIES, strict=True):
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)


def _cdf(ax: Axes, run: RunSummary, rows: list[RequestRecord], metric: str) -> None:
    values = sorted(float(getattr(r, metric)) for r in rows if getattr(r, metric) is not None)
    if values:
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        ax.step(values, fractions, where="post", label=f"{run.label} ({len(values)} requests)")
        return
    # imported runs: the percentiles they published, pooled over points
    qs = [
        (q / 100, max(p.stat(metric, f"p{q}") or 0 for p in run.points)) for q in (50, 90, 95, 99)
    ]
    ax.plot([v for _, v in qs], [f for f, _ in qs], marker="o", label=f"{run.label} (percentiles)")
