"""Summary statistics of one metric: n, mean, std (ddof 0), min, max and the
percentiles p50/p90/p95/p99 with linear interpolation (numpy's default, as vLLM
bench, aiperf and genai-perf use); optionally 95% bootstrap intervals of the
mean, p50, p90 and p99 (``confidence.py``), with p99 flagged when n < 100."""

from __future__ import annotations

import math

from pydantic import BaseModel

from sparkstack.bench.confidence import LOW_N_P99, bootstrap_ci

PERCENTILES = (50, 90, 95, 99)


class Stat(BaseModel):
    """Imported runs (aiperf, genai-perf) may lack some fields: those are None."""

    n: int = 0
    mean: float
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    ci95: dict[str, list[float]] | None = None
    """95% bootstrap interval [low, high] of mean, p50, p90, p99 (this run's requests)."""
    p99_low_n: bool | None = None
    """True when n < 100: the p99 is one or two requests, its interval wide."""

    def get(self, stat: str) -> float | None:
        value: float | None = getattr(self, stat)
        return value


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (Hyndman-Fan type 7)."""
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: list[float], ci: bool = False) -> Stat | None:
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / n)
    p50, p90, p95, p99 = (percentile(ordered, q) for q in PERCENTILES)
    stat = Stat(
        n=n, mean=mean, std=std, min=ordered[0], max=ordered[-1], p50=p50, p90=p90, p95=p95, p99=p99
    )
    if ci:
        stat.ci95 = bootstrap_ci(ordered) or None
        stat.p99_low_n = n < LOW_N_P99
    return stat
