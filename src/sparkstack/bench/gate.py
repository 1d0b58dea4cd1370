"""``bench compare A B --gate``: is B worse than A? For each chosen metric and
each point the two runs share, the bootstrap interval of the relative change of
the statistic (``confidence.relative_change``: both runs resampled
independently, 95%) gives a verdict:

* ``worse``: the whole interval is on the bad side of 0 (higher latency, lower
  throughput) and beyond the noise floor (``--noise-floor``, default 3%);
* ``better``: the whole interval is on the good side, beyond the noise floor;
* ``no detectable change``: otherwise (the interval reaches within the floor of 0).

A ``worse`` whose estimate exceeds ``--max-regression`` is a regression: the
gate fails (exit code 1). Both runs need their requests.csv (sparkstack runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparkstack.bench.confidence import relative_change, statistic
from sparkstack.bench.imports import load_run
from sparkstack.bench.options import BenchOptionError
from sparkstack.bench.records import RequestRecord
from sparkstack.bench.report import text_table
from sparkstack.bench.summary import CI_METRICS, RunSummary

NOISE_FLOOR = 0.03
"""Run-to-run drift that one run's requests cannot show (the machine, the server's
state): two runs against the same stub server on the 2-core dev machine differed
by up to 2.8% with intervals that excluded 0. A change counts only when its whole
interval lies beyond this."""
DEFAULT_METRICS = ("ttft_ms:p90", "itl_ms:p50", "e2e_ms:p90", "output_tok_s:mean")
HIGHER_IS_BETTER = {"output_tok_s", "decode_tok_s", "prefill_tok_s"}
GATE_METRICS = (*CI_METRICS, "prefill_tok_s")
"""The per-request metrics a gate may judge: those with intervals, and prefill rate."""
_STATS = ("mean", "p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class Verdict:
    point: str
    metric: str
    stat: str
    base: float
    new: float
    change: float
    low: float
    high: float
    verdict: str
    regression: bool


def parse_metric(text: str) -> tuple[str, str]:
    name, _, stat = text.partition(":")
    stat = stat or "p50"
    if name not in GATE_METRICS or stat not in _STATS:
        raise BenchOptionError(
            f"--metric {text!r}: give METRIC:STAT with METRIC one of {', '.join(GATE_METRICS)} "
            f"and STAT one of {', '.join(_STATS)}, e.g. --metric ttft_ms:p90"
        )
    return name, stat


def parse_regression(text: str, flag: str = "--max-regression") -> float:
    try:
        value = float(text.strip().removesuffix("%")) / (100 if text.strip().endswith("%") else 1)
    except ValueError:
        value = -1.0
    if value < 0:
        raise BenchOptionError(f"{flag} {text!r}: give a share like 5% or 0.05")
    return value


def _values(rows: list[RequestRecord], point: str, metric: str) -> list[float]:
    return [
        float(v)
        for r in rows
        if r.ok and r.point == point and (v := getattr(r, metric)) is not None
    ]


def judge(
    base: list[float],
    new: list[float],
    metric: str,
    stat: str,
    max_regression: float,
    noise_floor: float = NOISE_FLOOR,
) -> tuple[float, float, float, str, bool]:
    change, low, high = relative_change(base, new, stat)
    sign = -1.0 if metric in HIGHER_IS_BETTER else 1.0  # >0 means worse
    bad_low, bad_high = sorted((sign * low, sign * high))
    if bad_low > noise_floor:
        verdict = "worse"
    elif bad_high < -noise_floor:
        verdict = "better"
    else:
        verdict = "no detectable change"
    return change, low, high, verdict, verdict == "worse" and sign * change > max_regression


def gate(
    paths: list[Path], metrics: list[str], max_regression: float, noise_floor: float = NOISE_FLOOR
) -> tuple[list[Verdict], str]:
    if len(paths) != 2:
        raise BenchOptionError(f"--gate compares two runs (A then B); got {len(paths)}")
    (run_a, rows_a), (run_b, rows_b) = (load_run(p) for p in paths)
    for rows, path in ((rows_a, paths[0]), (rows_b, paths[1])):
        if not rows:
            raise BenchOptionError(
                f"{path}: no requests.csv; --gate needs per-request rows (a sparkstack run folder)"
            )
    chosen = [parse_metric(m) for m in metrics or DEFAULT_METRICS]
    shared = _shared_points(run_a, run_b)
    verdicts: list[Verdict] = []
    for point_a, point_b in shared:
        for metric, stat in chosen:
            base, new = _values(rows_a, point_a, metric), _values(rows_b, point_b, metric)
            if len(base) < 2 or len(new) < 2:
                continue
            change, low, high, verdict, regression = judge(
                base, new, metric, stat, max_regression, noise_floor
            )
            verdicts.append(
                Verdict(
                    point_b,
                    metric,
                    stat,
                    statistic(base, stat),
                    statistic(new, stat),
                    change,
                    low,
                    high,
                    verdict,
                    regression,
                )
            )
    if not verdicts:
        raise BenchOptionError(
            f"{paths[0]} and {paths[1]} share no point with values to compare (points are "
            "matched by concurrency, else rate, else name)"
        )
    return verdicts, _table(verdicts, max_regression)


def _shared_points(a: RunSummary, b: RunSummary) -> list[tuple[str, str]]:
    def key(p: object) -> str:
        concurrency, rate, label = (getattr(p, k) for k in ("concurrency", "rate", "label"))
        return f"c={concurrency} r={rate}" if concurrency or rate else str(label)

    keyed_b = {key(p): p.label for p in b.points}
    return [(p.label, keyed_b[key(p)]) for p in a.points if key(p) in keyed_b]


def _table(verdicts: list[Verdict], max_regression: float) -> str:
    rows = [["point", "metric", "A", "B", "change", "95% interval", "verdict"]]
    for v in verdicts:
        flag = "  REGRESSION" if v.regression else ""
        rows.append(
            [
                v.point,
                f"{v.metric}:{v.stat}",
                f"{v.base:,.2f}",
                f"{v.new:,.2f}",
                f"{100 * v.change:+.1f}%",
                f"[{100 * v.low:+.1f}%, {100 * v.high:+.1f}%]",
                v.verdict + flag,
            ]
        )
    failed = sum(v.regression for v in verdicts)
    tail = (
        f"gate: FAIL ({failed} regression(s) beyond {100 * max_regression:g}%)"
        if failed
        else f"gate: pass (no regression beyond {100 * max_regression:g}%)"
    )
    return text_table(rows, left=2) + "\n" + tail
