"""Bootstrap confidence intervals within one run, and the bootstrap difference of
two runs' statistics that ``bench compare --gate`` judges by.

Percentile bootstrap with a fixed seed (reruns give the same interval): resample
the per-request values with replacement ``RESAMPLES`` times, take the statistic
of each resample, and keep the 2.5th and 97.5th percentiles of those. Statistics
use linear interpolation, as ``stats.describe`` does."""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
CI_STATS = ("mean", "p50", "p90", "p99")
MAX_VALUES = 5_000
"""Above this many values a metric is subsampled (seeded) before resampling: the
interval is then a little wider than the full sample's, never narrower."""
LOW_N_P99 = 100
"""A p99 from fewer values rests on one or two requests: flagged."""
_BLOCK = 100
"""Resamples drawn at a time (bounds memory: _BLOCK x MAX_VALUES floats)."""


def _array(values: list[float], rng: np.random.Generator) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if len(data) > MAX_VALUES:
        data = rng.choice(data, MAX_VALUES, replace=False)
    return data


def _resampled(data: np.ndarray, stats: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Shape (len(stats), RESAMPLES): each statistic of each resample of ``data``."""
    qs = [float(s[1:]) for s in stats if s != "mean"]
    out = np.empty((len(stats), RESAMPLES))
    for start in range(0, RESAMPLES, _BLOCK):
        picks = data[rng.integers(0, len(data), size=(_BLOCK, len(data)))]
        cuts = np.percentile(picks, qs, axis=1) if qs else np.empty((0, _BLOCK))
        row = iter(cuts)
        for i, stat in enumerate(stats):
            out[i, start : start + _BLOCK] = picks.mean(axis=1) if stat == "mean" else next(row)
    return out


def bootstrap_ci(values: list[float], seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of mean, p50, p90, p99; empty for fewer than 2 values."""
    if len(values) < 2:
        return {}
    rng = np.random.default_rng(seed)
    table = _resampled(_array(values, rng), CI_STATS, rng)
    bounds = np.percentile(table, [2.5, 97.5], axis=1)
    return {stat: [float(bounds[0, i]), float(bounds[1, i])] for i, stat in enumerate(CI_STATS)}


def statistic(values: list[float], stat: str) -> float:
    data = np.asarray(values, dtype=float)
    return float(data.mean() if stat == "mean" else np.percentile(data, float(stat[1:])))


def relative_change(
    base: list[float], new: list[float], stat: str, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, low, high): the change of ``stat`` from ``base`` to ``new`` as a
    fraction of base (0.2 = 20% higher), with a 95% bootstrap interval from
    resampling both runs independently."""
    rng = np.random.default_rng(seed)
    a, b = _array(base, rng), _array(new, rng)
    ref = statistic(base, stat)
    if ref == 0:
        return 0.0, 0.0, 0.0
    ratios = _resampled(b, (stat,), rng)[0] / _resampled(a, (stat,), rng)[0] - 1
    low, high = np.percentile(ratios, [2.5, 97.5])
    return statistic(new, stat) / ref - 1, float(low), float(high)
