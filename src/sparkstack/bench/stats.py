"""Summary statistics of one metric: n, mean, std (ddof 0), min, max and the
percentiles p50/p90/p95/p99 with linear interpolation (numpy's default, as vLLM
bench, aiperf and genai-perf use)."""

from __future__ import annotations

import math

from pydantic import BaseModel

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

    def get(self, stat: str) -> float | None:
        value: float | None = getattr(self, stat)
        return value


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (Hyndman-Fan type 7)."""
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: list[float]) -> Stat | None:
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / n)
    p50, p90, p95, p99 = (percentile(ordered, q) for q in PERCENTILES)
    return Stat(
        n=n, mean=mean, std=std, min=ordered[0], max=ordered[-1], p50=p50, p90=p90, p95=p95, p99=p99
    )
