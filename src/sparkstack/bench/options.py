"""What a bench run is asked to do: the target, and the load points it runs
(one per concurrency or rate, or one per scenario step)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from sparkstack.errors import SparkstackError


class BenchOptionError(SparkstackError):
    """A bench flag has a value we cannot use."""


@dataclass(frozen=True)
class LengthDist:
    """A token length: normal(mean, stddev), rounded, at least 1."""

    mean: int
    stddev: float = 0.0

    @classmethod
    def parse(cls, text: str, flag: str) -> LengthDist:
        parts = [p.strip() for p in text.split(",")]
        try:
            mean = int(parts[0])
            stddev = float(parts[1]) if len(parts) > 1 else 0.0
        except (ValueError, IndexError):
            raise BenchOptionError(
                f"{flag} {text!r}: give MEAN or MEAN,STDDEV in tokens, e.g. {flag} 128,20"
            ) from None
        if mean < 1 or stddev < 0 or len(parts) > 2:
            raise BenchOptionError(f"{flag} {text!r}: MEAN must be >= 1 and STDDEV >= 0")
        return cls(mean, stddev)

    def sample(self, rng: random.Random) -> int:
        if self.stddev == 0:
            return self.mean
        return max(1, round(rng.gauss(self.mean, self.stddev)))

    def __str__(self) -> str:
        return f"{self.mean}" if self.stddev == 0 else f"{self.mean}±{self.stddev:g}"


@dataclass(frozen=True)
class Point:
    """One load point: a closed loop of ``concurrency`` users, or an open loop at
    ``rate`` requests/s (capped at ``concurrency`` in flight when both are set)."""

    label: str
    input: LengthDist
    output: LengthDist
    concurrency: int | None = 1
    rate: float | None = None
    arrival: str = "poisson"
    requests: int | None = None
    duration: float | None = None
    warmup: int = 1

    def with_overrides(self, **changes: object) -> Point:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Target:
    url: str
    """Base URL ending in /v1."""
    model: str
    endpoint: str = "chat"
    api_key: str | None = None
    timeout: float = 600.0
    tokenizer: str | None = None
    seed: int = 0
    extra_body: dict[str, object] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def path(self) -> str:
        return "/chat/completions" if self.endpoint == "chat" else "/completions"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class Checks:
    """How the run checks itself: client calibration, validity thresholds, SLO."""

    calibrate: bool = True
    max_loop_lag_ms: float = 25.0
    max_send_lag_ms: float = 25.0
    slo: dict[str, float] = field(default_factory=dict)
    """Per-request bounds in ms (ttft_ms, tpot_ms, itl_ms, e2e_ms): a request is good
    when it meets every one (goodput); the SLO holds at a point when at least
    ``slo_attainment`` of its requests are good."""
    slo_attainment: float = 0.9


@dataclass(frozen=True)
class Sweep:
    """--sweep-until-saturation: double concurrency (or rate) from ``start`` until
    throughput grows less than ``min_gain`` or the SLO breaks, at most ``limit``."""

    by: str
    start: float
    limit: float
    min_gain: float = 0.10


SLO_METRICS = ("ttft_ms", "ttft_sched_ms", "tpot_ms", "itl_ms", "e2e_ms", "e2e_sched_ms")


def parse_slo(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``ttft_ms=500`` or ``ttft_ms:500`` items -> {metric: bound ms}."""
    slo: dict[str, float] = {}
    for item in items:
        name, sep, value = item.replace(":", "=").partition("=")
        try:
            bound = float(value.removesuffix("ms"))
        except ValueError:
            bound = -1.0
        if not sep or name not in SLO_METRICS or bound <= 0:
            raise BenchOptionError(
                f"--slo {item!r}: give METRIC=MS with METRIC one of {', '.join(SLO_METRICS)}, "
                "e.g. --slo ttft_ms=500 --slo tpot_ms=50"
            )
        slo[name] = bound
    return slo


def normalise_url(url: str) -> str:
    """``http://host:port``, ``…/v1`` or ``…/v1/chat/completions`` -> ``…/v1``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchOptionError(f"URL {url!r}: give http://HOST:PORT (optionally ending in /v1)")
    path = parts.path.rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        path = path.removesuffix(tail)
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise BenchOptionError(
            f"--concurrency {text!r}: give a comma-separated list, e.g. 1,2,4,8"
        ) from None
    if not values or min(values) < 1:
        raise BenchOptionError(f"--concurrency {text!r}: every value must be >= 1")
    return values
