"""`sparkstack bench compare` / `plot`: several runs (ours or imported) overlaid in
the same plots, and a table of ratios against the first run, point by point
(matched by concurrency, else rate, else point name)."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path

from sparkstack.bench.imports import load_run
from sparkstack.bench.options import BenchOptionError
from sparkstack.bench.report import html_table, text_table, write_report
from sparkstack.bench.summary import PointSummary, RunSummary

RATIO_METRICS = (
    ("output tok/s", "output_token_throughput", None),
    ("requests/s", "request_throughput", None),
    ("TTFT mean ms", "ttft_ms", "mean"),
    ("TTFT p95 ms", "ttft_ms", "p95"),
    ("ITL mean ms", "itl_ms", "mean"),
    ("E2E mean ms", "e2e_ms", "mean"),
    ("E2E p95 ms", "e2e_ms", "p95"),
)


@dataclass
class RatioRow:
    point: str
    metric: str
    values: list[float | None]

    def ratio(self, i: int) -> float | None:
        base, value = self.values[0], self.values[i]
        if base is None or value is None or base == 0:
            return None
        return value / base


def _key(point: PointSummary, by: str) -> str:
    if by == "concurrency":
        return f"c={point.concurrency}"
    if by == "rate":
        return f"{point.rate:g} req/s"
    return point.label


def _match_by(runs: list[RunSummary]) -> str:
    for attr in ("concurrency", "rate"):
        if all(
            all(getattr(p, attr) is not None for p in run.points)
            and len({getattr(p, attr) for p in run.points}) == len(run.points)
            for run in runs
        ):
            return attr
    return "label"


def _value(point: PointSummary | None, metric: str, stat: str | None) -> float | None:
    if point is None:
        return None
    if stat is None:
        value = float(getattr(point, metric))
        return value or None
    return point.stat(metric, stat)


def ratio_rows(runs: list[RunSummary]) -> list[RatioRow]:
    by = _match_by(runs)
    keyed = [{_key(p, by): p for p in run.points} for run in runs]
    keys = list(dict.fromkeys(k for table in keyed for k in table))
    return [
        RatioRow(key, name, [_value(table.get(key), metric, stat) for table in keyed])
        for key in keys
        for name, metric, stat in RATIO_METRICS
    ]


def _fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}×" if ratio else f"{value:,.1f}"


def ratio_table(runs: list[RunSummary], rows: list[RatioRow]) -> list[list[str]]:
    """Header and rows: each run's value, then each run's ratio to the first."""
    labels = [r.label for r in runs]
    header = ["point", "metric", *labels, *(f"{label} / {labels[0]}" for label in labels[1:])]
    return [header] + [
        [row.point, row.metric, *(_fmt(v) for v in row.values),
         *(_fmt(row.ratio(i), True) for i in range(1, len(runs)))]
        for row in rows
    ]  # fmt: skip


def compare(paths: list[Path], labels: list[str], out: Path) -> tuple[list[RunSummary], str]:
    """Load each source, write plots, comparison.csv and report.html into ``out``;
    return the runs and the ratio table as text."""
    if labels and len(labels) != len(paths):
        raise BenchOptionError(
            f"--labels gives {len(labels)} names for {len(paths)} runs: give one per run"
        )
    loaded = [load_run(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    runs = [run for run, _ in loaded]
    seen: set[str] = set()
    for i, run in enumerate(runs):  # plots need distinct legend names
        if run.label in seen:
            run.label = f"{run.label} ({i + 1})"
        seen.add(run.label)
    records = {run.label: rows for run, (_, rows) in zip(runs, loaded, strict=True)}
    out.mkdir(parents=True, exist_ok=True)
    text = ""
    ratio_section = ""
    if len(runs) > 1:
        rows = ratio_rows(runs)
        table = ratio_table(runs, rows)
        text = text_table(table, left=2)
        ratio_section = f"<h2>Ratios to {html.escape(runs[0].label)}</h2>" + html_table(
            table[0], table[1:]
        )
        _write_ratio_csv(out / "comparison.csv", runs, rows)
    write_report(out, runs, records, ratio_table=ratio_section)
    return runs, text


def _write_ratio_csv(path: Path, runs: list[RunSummary], rows: list[RatioRow]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["point", "metric", "run", "value", "ratio_to_first"])
        for row in rows:
            for i, run in enumerate(runs):
                value, ratio = row.values[i], row.ratio(i)
                writer.writerow([row.point, row.metric, run.label,
                                 "" if value is None else repr(value),
                                 "" if ratio is None else repr(ratio)])  # fmt: skip
