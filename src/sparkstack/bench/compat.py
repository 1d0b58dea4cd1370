"""The same point's numbers under other tools' definitions (``definitions.py``
says which), computed from the same per-request records: what vLLM bench,
aiperf, genai-perf and GuideLLM would have printed for these requests."""

from __future__ import annotations

from sparkstack.bench.records import RequestRecord
from sparkstack.bench.stats import Stat, describe


def _stats(columns: dict[str, list[float]]) -> dict[str, Stat]:
    return {name: stat for name, values in columns.items() if (stat := describe(values))}


def _vllm_latency(r: RequestRecord) -> float:
    return (r.e2e_ms or 0.0) + (r.tail_gap_ms or 0.0)


def _vllm_gaps(r: RequestRecord) -> list[float]:
    lead = [] if r.lead_gap_ms is None else [r.lead_gap_ms]
    tail = [] if r.tail_gap_ms is None else [r.tail_gap_ms]
    return lead + r.chunk_gaps_ms + tail


def vllm(ok: list[RequestRecord]) -> tuple[dict[str, Stat], dict[str, float]]:
    tpots = [
        (_vllm_latency(r) - (r.ttfc_ms or 0.0)) / (r.completion_tokens - 1)
        for r in ok
        if r.completion_tokens and r.completion_tokens > 1
    ]
    stats = _stats(
        {
            "ttft_ms": [r.ttfc_ms for r in ok if r.ttfc_ms is not None],
            "tpot_ms": tpots,
            "itl_ms": [gap for r in ok for gap in _vllm_gaps(r)],
            "e2el_ms": [_vllm_latency(r) for r in ok],
        }
    )
    return stats, {}


def _span_s(records: list[RequestRecord], end: str) -> float:
    starts = [r.start_s for r in records]
    ends = [r.start_s + (getattr(r, end) or r.close_ms or 0.0) / 1000 for r in records]
    return max(max(ends) - min(starts), 1e-9) if records else 0.0


def _throughputs(ok: list[RequestRecord], span: float) -> dict[str, float]:
    tokens = sum(r.completion_tokens or 0 for r in ok)
    return {"request_throughput": len(ok) / span, "output_token_throughput": tokens / span}


def aiperf(ok: list[RequestRecord]) -> tuple[dict[str, Stat], dict[str, float]]:
    stats = _stats(
        {
            "time_to_first_token": [r.ttft_ms for r in ok if r.ttft_ms is not None],
            "inter_token_latency": [r.itl_ms for r in ok if r.itl_ms is not None],
            "inter_chunk_latency": [gap for r in ok for gap in r.chunk_gaps_ms],
            "request_latency": [r.e2e_ms for r in ok if r.e2e_ms is not None],
            "output_token_throughput_per_user": [1000 / r.itl_ms for r in ok if r.itl_ms],
        }
    )
    return stats, _throughputs(ok, _span_s(ok, "e2e_ms"))


def genai_perf(ok: list[RequestRecord]) -> tuple[dict[str, Stat], dict[str, float]]:
    stats, scalars = aiperf(ok)
    stats.pop("inter_chunk_latency", None)
    return stats, scalars


def _weighted_mean(values: list[tuple[float, float]]) -> float | None:
    weight = sum(w for _, w in values)
    return sum(v * w for v, w in values) / weight if weight else None


def guidellm(ok: list[RequestRecord]) -> tuple[dict[str, Stat], dict[str, float]]:
    itl = [(r.itl_ms, (r.completion_tokens or 0) - 1.0) for r in ok if r.itl_ms is not None]
    tpot = [(r.tpot_ms, float(r.completion_tokens or 0)) for r in ok if r.tpot_ms is not None]
    stats = _stats(
        {
            "time_to_first_token_ms": [r.ttft_ms for r in ok if r.ttft_ms is not None],
            "inter_token_latency_ms": [v for v, _ in itl],
            "time_per_output_token_ms": [v for v, _ in tpot],
            "request_latency": [r.close_ms for r in ok if r.close_ms is not None],
        }
    )
    for name, pairs in (("inter_token_latency_ms", itl), ("time_per_output_token_ms", tpot)):
        mean = _weighted_mean(pairs)
        if name in stats and mean is not None:
            stats[name].mean = mean  # GuideLLM weights these means by tokens
    return stats, _throughputs(ok, _span_s(ok, "close_ms"))


def compat(
    records: list[RequestRecord],
) -> tuple[dict[str, dict[str, Stat]], dict[str, dict[str, float]]]:
    """(tool -> metric -> Stat, tool -> scalar -> value) for one point's records."""
    ok = [r for r in records if r.ok]
    if not ok:
        return {}, {}
    stats: dict[str, dict[str, Stat]] = {}
    scalars: dict[str, dict[str, float]] = {}
    for tool, fn in (
        ("vllm", vllm),
        ("aiperf", aiperf),
        ("genai-perf", genai_perf),
        ("guidellm", guidellm),
    ):
        stats[tool], scalars[tool] = fn(ok)
    span = _span_s(records, "close_ms")
    scalars["vllm"] = {**_throughputs(ok, span), "duration_s": span}
    return stats, scalars
