"""Is a point's measurement sound? Two kinds of answer:

* the client kept up (``client_health``): the loop's own lag and the client's
  lateness on its schedule against thresholds, and the share of the calibrated
  client ceiling used. A point over a threshold is invalid, with the reason.
* the run-validity checks (``run_checks``): role-chunk gap, answers shorter than
  asked, missing usage, length fields the server refused, prefix-cache hits from
  the engine's own counters, and warm-up effects (the first requests slower than
  the rest)."""

from __future__ import annotations

from dataclasses import dataclass

from sparkstack.bench.calibrate import Calibration
from sparkstack.bench.records import RequestRecord
from sparkstack.bench.stats import percentile
from sparkstack.bench.summary import ClientHealth, PointSummary, ValidityCheck


@dataclass(frozen=True)
class Thresholds:
    loop_lag_ms: float = 25.0
    """p99 of the event loop's wake-up lag above this: the client stamped late."""
    send_lag_ms: float = 25.0
    """p99 of the client's own lateness on the open-loop schedule above this."""


def _p99(values: list[float]) -> float | None:
    return percentile(sorted(values), 99) if values else None


def client_health(
    point: PointSummary,
    records: list[RequestRecord],
    loop_lags_ms: list[float],
    calibration: Calibration | None,
    limits: Thresholds,
) -> ClientHealth:
    health = ClientHealth(
        loop_lag_ms_p99=_p99(loop_lags_ms),
        loop_lag_ms_max=max(loop_lags_ms) if loop_lags_ms else None,
        client_lag_ms_p99=_p99([r.client_lag_ms for r in records]) if point.rate else None,
    )
    if calibration is not None and point.duration_s > 0:
        events = sum(r.token_events + 3 for r in records) / point.duration_s
        health.client_share = max(
            point.request_throughput / calibration.requests_per_s,
            events / calibration.events_per_s,
        )
    if health.loop_lag_ms_p99 is not None and health.loop_lag_ms_p99 > limits.loop_lag_ms:
        health.reasons.append(
            f"event-loop lag p99 {health.loop_lag_ms_p99:.1f} ms > {limits.loop_lag_ms:g} ms "
            "(the client was too busy to stamp reads on time)"
        )
    if health.client_lag_ms_p99 is not None and health.client_lag_ms_p99 > limits.send_lag_ms:
        health.reasons.append(
            f"send lag p99 {health.client_lag_ms_p99:.1f} ms > {limits.send_lag_ms:g} ms "
            "(the client fell behind its own schedule)"
        )
    health.valid = not health.reasons
    return health


def run_checks(
    point: PointSummary, records: list[RequestRecord], fields_sent: list[str]
) -> list[ValidityCheck]:
    ok = [r for r in records if r.ok]
    checks: list[ValidityCheck] = []
    gaps = sorted(r.ttft_ms - r.ttfc_ms for r in ok if r.ttft_ms is not None and r.ttfc_ms)
    if gaps:
        gap = percentile(gaps, 50)
        ttft = point.stat("ttft_ms", "p50") or 0.0
        checks.append(
            ValidityCheck(
                name="role-chunk gap",
                value=gap,
                ok=gap <= max(1.0, 0.05 * ttft),
                detail=f"median {gap:.2f} ms from the first chunk to the first token (tools that "
                "time TTFT at the first chunk, as vLLM bench does, report this much less)",
            )
        )
    short = [r for r in ok if (r.completion_tokens or 0) < r.output_tokens_requested]
    checks.append(
        ValidityCheck(
            name="answers shorter than asked",
            value=float(len(short)),
            ok=not short,
            detail=f"{len(short)} of {len(ok)} answers ended before --output-tokens",
        )
    )
    missing = [r for r in ok if r.osl_source != "usage"]
    checks.append(
        ValidityCheck(
            name="missing usage",
            value=float(len(missing)),
            ok=not missing,
            detail=f"{len(missing)} of {len(ok)} streams had no usage chunk "
            "(tokens counted as events)",
        )
    )
    refused = sorted({"min_tokens", "ignore_eos"} - set(fields_sent))
    checks.append(
        ValidityCheck(
            name="server-rejected fields",
            value=float(len(refused)),
            ok=not refused,
            detail="refused: " + ", ".join(refused)
            if refused
            else "min_tokens and ignore_eos sent",
        )
    )
    rate = point.server.prefix_cache_hit_rate if point.server else None
    checks.append(
        ValidityCheck(
            name="prefix-cache hits",
            value=rate,
            ok=rate is None or rate < 0.1,
            detail="engine counters not available"
            if rate is None
            else f"{100 * rate:.1f}% of prompt tokens came from the engine's prefix cache",
        )
    )
    checks.append(_warm_up(ok))
    return checks


def _warm_up(ok: list[RequestRecord]) -> ValidityCheck:
    ordered = sorted(ok, key=lambda r: r.start_s)
    head = max(1, len(ordered) // 10)
    first = sorted(r.ttft_ms for r in ordered[:head] if r.ttft_ms is not None)
    rest = sorted(r.ttft_ms for r in ordered[head:] if r.ttft_ms is not None)
    if len(ordered) < 10 or not first or not rest:
        return ValidityCheck(name="warm-up effect", ok=True, detail="too few requests to tell")
    ratio = percentile(first, 50) / max(percentile(rest, 50), 1e-9)
    return ValidityCheck(
        name="warm-up effect",
        value=ratio,
        ok=ratio < 1.5,
        detail=f"first 10% of requests: TTFT p50 {ratio:.2f}x the rest's",
    )
