"""Per-minute figures without touching the request path: cumulative counters are
sampled once a second into a ring, and every figure over "the last minute" is the
difference between the newest sample and the one a minute older. Quantiles come
from histogram bucket differences, interpolated as Prometheus's
``histogram_quantile`` does."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

WINDOW_S = 60.0
HISTORY = 61


@dataclass(frozen=True)
class Buckets:
    """A histogram's per-bucket (not cumulative) counts; the last bound is +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def minus(self, older: Buckets | None) -> Buckets:
        if older is None or older.bounds != self.bounds:
            return self
        return Buckets(
            self.bounds, tuple(a - b for a, b in zip(self.counts, older.counts, strict=True))
        )

    def quantile(self, q: float) -> float | None:
        total = sum(self.counts)
        if total <= 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                upper = self.bounds[index]
                lower = self.bounds[index - 1] if index else 0.0
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - seen) / count
            seen += count
        return None


@dataclass(frozen=True)
class ModelCounters:
    """One model's cumulative counters at one moment. ``None``: not measured here
    (an engine without metrics has no token counters)."""

    requests: int = 0
    errors: int = 0
    ttft: Buckets | None = None
    itl: Buckets | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None


@dataclass(frozen=True)
class Sample:
    at: float
    """time.monotonic() of the sample."""
    models: dict[str, ModelCounters]


@dataclass(frozen=True)
class MinuteFigures:
    requests_per_s: float
    errors: int
    prompt_tok_s: float | None
    generation_tok_s: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None


def _rate(new: float | None, old: float | None, seconds: float) -> float | None:
    if new is None or old is None or seconds <= 0:
        return None
    return max(0.0, new - old) / seconds


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


@dataclass
class Window:
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def _span(self) -> tuple[Sample, Sample] | None:
        if len(self.samples) < 2:
            return None
        newest = self.samples[-1]
        oldest = next(s for s in self.samples if newest.at - s.at <= WINDOW_S + 0.5)
        if oldest is newest:
            oldest = self.samples[-2]
        return oldest, newest

    def minute(self, model: str) -> MinuteFigures | None:
        span = self._span()
        if span is None:
            return None
        old_sample, new_sample = span
        new = new_sample.models.get(model)
        if new is None:
            return None
        old = old_sample.models.get(model) or ModelCounters()
        seconds = new_sample.at - old_sample.at
        ttft = new.ttft.minus(old.ttft) if new.ttft else None
        itl = new.itl.minus(old.itl) if new.itl else None
        return MinuteFigures(
            requests_per_s=round(max(0, new.requests - old.requests) / seconds, 3),
            errors=max(0, new.errors - old.errors),
            prompt_tok_s=_rate(new.prompt_tokens, old.prompt_tokens, seconds),
            generation_tok_s=_rate(new.generation_tokens, old.generation_tokens, seconds),
            ttft_p50_ms=_ms(ttft.quantile(0.5)) if ttft else None,
            ttft_p95_ms=_ms(ttft.quantile(0.95)) if ttft else None,
            itl_p50_ms=_ms(itl.quantile(0.5)) if itl else None,
            itl_p95_ms=_ms(itl.quantile(0.95)) if itl else None,
        )

    def generation_history(self, model: str) -> list[float | None]:
        """Generation tokens/s between consecutive samples, oldest first."""
        out: list[float | None] = []
        samples = list(self.samples)
        for older, newer in pairwise(samples):
            new, old = newer.models.get(model), older.models.get(model)
            value = _rate(
                new.generation_tokens if new else None,
                old.generation_tokens if old else None,
                newer.at - older.at,
            )
            out.append(None if value is None else round(value, 2))
        return out
