"""The steady-state window of a point, found from the requests themselves: the
load is at its plateau from the moment the number of requests in flight first
reaches its median level (ramp-up over) until the last request is sent (after
that the point only drains). Figures over the requests that started and ended
inside the window, beside the whole-point figures."""

from __future__ import annotations

from sparkstack.bench.records import RequestRecord
from sparkstack.bench.stats import describe
from sparkstack.bench.summary import SteadyState

_METRICS = ("ttft_ms", "ttft_sched_ms", "itl_ms", "e2e_ms", "tpot_ms")


def _end_s(r: RequestRecord) -> float:
    return r.start_s + ((r.e2e_ms if r.ok and r.e2e_ms else r.close_ms) or 0.0) / 1000


def steady_state(records: list[RequestRecord]) -> SteadyState | None:
    if len(records) < 8:
        return None
    edges = sorted([(r.start_s, 1) for r in records] + [(_end_s(r), -1) for r in records])
    level, levels, times = 0, [], []
    for time, step in edges:
        level += step
        levels.append(level)
        times.append(time)
    last_send = max(r.start_s for r in records)
    during = sorted(lv for t, lv in zip(times, levels, strict=True) if t <= last_send)
    plateau = during[len(during) // 2] if during else 1
    start = next(t for t, lv in zip(times, levels, strict=True) if lv >= plateau)
    inside = [r for r in records if r.start_s >= start and _end_s(r) <= last_send]
    ok = [r for r in inside if r.ok]
    window = last_send - start
    if window <= 0 or len(ok) < 4:
        return None
    state = SteadyState(
        start_s=start,
        end_s=last_send,
        requests=len(inside),
        request_throughput=len(ok) / window,
        output_token_throughput=sum(r.completion_tokens or 0 for r in ok) / window,
    )
    for name in _METRICS:
        values = [float(v) for r in ok if (v := getattr(r, name)) is not None]
        if (stat := describe(values)) is not None:
            state.metrics[name] = stat
    return state
