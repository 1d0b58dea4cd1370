"""``--sweep-until-saturation``: the next load point of a sweep (concurrency or
rate doubled), when to stop (throughput grew less than ``min_gain`` over the last
point, the SLO broke, or the limit was reached), the knee (the last point whose
throughput still grew by ``min_gain``, and no later than the last point meeting
the SLO), and goodput: requests/s meeting every SLO bound."""

from __future__ import annotations

from sparkstack.bench.options import Checks, Point, Sweep
from sparkstack.bench.records import RequestRecord
from sparkstack.bench.summary import PointSummary, SweepResult


def is_good(record: RequestRecord, slo: dict[str, float]) -> bool:
    """Every bound met (a missing value, e.g. ITL of a 1-token answer, counts as 0,
    as vLLM bench does for TPOT)."""
    return record.ok and all((getattr(record, m) or 0.0) <= bound for m, bound in slo.items())


def goodput(records: list[RequestRecord], slo: dict[str, float], duration_s: float) -> float:
    good = sum(1 for r in records if is_good(r, slo))
    return good / duration_s if duration_s > 0 else 0.0


def slo_holds(point: PointSummary, checks: Checks) -> bool:
    if not checks.slo or point.goodput is None or point.request_throughput <= 0:
        return True
    attained = point.goodput / (point.requests_sent / point.duration_s)
    return attained >= checks.slo_attainment


def _x(point: PointSummary, by: str) -> float:
    value = point.concurrency if by == "concurrency" else point.rate
    return float(value or 0)


def _gain(points: list[PointSummary], i: int) -> float:
    before = points[i - 1].output_token_throughput
    return points[i].output_token_throughput / before - 1 if before > 0 else 1.0


def stop_reason(sweep: Sweep, checks: Checks, points: list[PointSummary]) -> str | None:
    last = points[-1]
    if not slo_holds(last, checks):
        return f"SLO broken at {last.label}"
    if len(points) > 1 and _gain(points, len(points) - 1) < sweep.min_gain:
        return (
            f"throughput stopped growing at {last.label} "
            f"({100 * _gain(points, len(points) - 1):+.0f}% < +{100 * sweep.min_gain:.0f}%)"
        )
    if _x(last, sweep.by) * 2 > sweep.limit:
        return f"reached the sweep limit ({sweep.limit:g})"
    return None


def next_point(
    sweep: Sweep, checks: Checks, points: list[PointSummary], last: Point
) -> Point | None:
    if stop_reason(sweep, checks, points) is not None:
        return None
    if sweep.by == "concurrency":
        level = (last.concurrency or 1) * 2
        # every user needs requests to send: at least two each per point
        requests = max(last.requests, 2 * level) if last.requests is not None else None
        return last.with_overrides(label=f"c={level}", concurrency=level, requests=requests)
    rate = (last.rate or sweep.start) * 2
    cap = f" c≤{last.concurrency}" if last.concurrency else ""
    return last.with_overrides(label=f"{rate:g} req/s{cap}", rate=rate)


def sweep_result(sweep: Sweep, checks: Checks, points: list[PointSummary]) -> SweepResult:
    result = SweepResult(
        by=sweep.by,
        stop_reason=stop_reason(sweep, checks, points) or "ran every point",
        slo=dict(checks.slo),
    )
    if not points:
        return result
    knee = 0
    for i in range(1, len(points)):
        if _gain(points, i) < sweep.min_gain:
            break
        knee = i
    meeting = [i for i, p in enumerate(points) if slo_holds(p, checks)]
    if checks.slo and meeting:
        knee = min(knee, max(meeting))
    result.knee_label, result.knee_x = points[knee].label, _x(points[knee], sweep.by)
    rated = [p for p in points if p.goodput is not None]
    if rated:
        best = max(rated, key=lambda p: p.goodput or 0.0)
        result.best_goodput, result.best_goodput_label = best.goodput, best.label
    return result
