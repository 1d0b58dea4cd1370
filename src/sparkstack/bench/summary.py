"""Aggregates a point's `RequestRecord`s into a `PointSummary`, and owns the
run's ``summary.json`` (schema ``sparkstack.bench/v1.1``, documented in the README;
v1 files still read: v1.1 only adds fields) and the tidy long-format
``summary.csv`` (one row per point, metric and stat)."""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from sparkstack.bench.calibrate import Calibration
from sparkstack.bench.definitions import COMPAT_DEFINITIONS, METRIC_DEFINITIONS, MetricDefinition
from sparkstack.bench.errors import BenchDataError
from sparkstack.bench.records import RequestRecord
from sparkstack.bench.stats import Stat, describe

SCHEMA = "sparkstack.bench/v1.1"
READABLE_SCHEMAS = ("sparkstack.bench/v1", SCHEMA)
CI_METRICS = (
    "ttft_ms",
    "ttft_sched_ms",
    "ttfc_ms",
    "itl_ms",
    "tpot_ms",
    "e2e_ms",
    "e2e_sched_ms",
    "output_tok_s",
    "decode_tok_s",
)
"""Metrics whose statistics get bootstrap intervals (per request; not pooled gaps)."""

DEFINITIONS: dict[str, str] = {
    "ttft_ms": "first token-bearing event - request sent (reasoning chunks count)",
    "ttfc_ms": "first data event with choices - request sent (= vLLM bench TTFT)",
    "itl_ms": "(e2e - ttft) / (output tokens - 1) per request (= aiperf/genai-perf ITL, vLLM TPOT)",
    "tpot_ms": "e2e / output tokens per request, prefill included (= GuideLLM TPOT)",
    "chunk_gap_ms": "gap between consecutive token-bearing events, pooled over requests "
    "(= vLLM ITL, aiperf ICL)",
    "e2e_ms": "last token-bearing event - request sent",
    "output_tok_s": "output tokens / e2e per request",
    "decode_tok_s": "1000 / itl_ms per request (decode speed one user sees)",
    "prefill_tok_s": "usage.prompt_tokens / ttft per request",
    "send_lag_ms": "request sent - scheduled (open loop; client-side queueing)",
    "client_lag_ms": "client ready to send - scheduled (open loop; the client's own lateness, "
    "slot waits excluded)",
    "ttft_sched_ms": "first token-bearing event - scheduled send time (open loop: "
    "coordinated-omission safe; = ttft_ms in closed loop)",
    "e2e_sched_ms": "last token-bearing event - scheduled send time",
    "output_token_throughput": "sum of output tokens of ok requests / duration",
    "request_throughput": "ok requests / duration",
    "input_token_throughput": "sum of usage.prompt_tokens of ok requests / duration",
    "duration_s": "last token of any request - first request sent",
    "output tokens": "usage.completion_tokens (stream_options.include_usage), reasoning "
    "included; token-bearing event count only when the server sends no usage",
}

METRIC_UNITS: dict[str, str] = {
    "ttft_ms": "ms",
    "ttfc_ms": "ms",
    "itl_ms": "ms",
    "tpot_ms": "ms",
    "chunk_gap_ms": "ms",
    "e2e_ms": "ms",
    "output_tok_s": "tokens/s",
    "decode_tok_s": "tokens/s",
    "prefill_tok_s": "tokens/s",
    "prompt_tokens": "tokens",
    "completion_tokens": "tokens",
    "tokens_per_event": "tokens",
    "send_lag_ms": "ms",
    "client_lag_ms": "ms",
    "ttft_sched_ms": "ms",
    "e2e_sched_ms": "ms",
}


class ServerMetrics(BaseModel):
    """Engine-side figures sampled from a sparkstack gateway's /metrics during a point."""

    samples: int = 0
    kv_cache_usage_max: float | None = None
    kv_cache_usage_mean: float | None = None
    requests_waiting_max: float | None = None
    requests_running_max: float | None = None
    prefix_cache_hit_rate: float | None = None
    """Engine prefix-cache hits / queries (tokens) over the point, from its own counters."""
    engine_ttft_ms_mean: float | None = None
    """The engine's own TTFT histogram (sum/count delta over the point), e.g. vLLM's."""
    engine_e2e_ms_mean: float | None = None
    engine_requests: int | None = None


class ClientHealth(BaseModel):
    """Did the client keep up at this point? (thresholds: --max-loop-lag-ms,
    --max-send-lag-ms)."""

    loop_lag_ms_p99: float | None = None
    loop_lag_ms_max: float | None = None
    client_lag_ms_p99: float | None = None
    client_share: float | None = None
    """max(requests/s, events/s) of this point / the calibrated client ceiling."""
    valid: bool = True
    reasons: list[str] = Field(default_factory=list)


class ValidityCheck(BaseModel):
    name: str
    ok: bool
    value: float | None = None
    detail: str = ""


class SteadyState(BaseModel):
    """The window where the load was at its plateau: from the moment the requests
    in flight first reach their median level to the last send (ramp-up and drain
    excluded). Figures over requests that started and ended inside it."""

    start_s: float
    end_s: float
    requests: int
    request_throughput: float
    output_token_throughput: float
    metrics: dict[str, Stat] = Field(default_factory=dict)


class ClientServerSplit(BaseModel):
    """Client TTFT/E2E minus the engine's own (its histograms via the gateway's
    /metrics over the same point): network + gateway + client time."""

    client_ttft_ms_mean: float
    engine_ttft_ms_mean: float
    ttft_outside_engine_ms: float
    client_e2e_ms_mean: float | None = None
    engine_e2e_ms_mean: float | None = None
    e2e_outside_engine_ms: float | None = None
    engine_requests: int = 0


class PointSummary(BaseModel):
    label: str
    concurrency: int | None = None
    rate: float | None = None
    arrival: str | None = None
    input_tokens: str = ""
    output_tokens: str = ""
    requests_sent: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    error_examples: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    request_throughput: float = 0.0
    output_token_throughput: float = 0.0
    input_token_throughput: float = 0.0
    total_token_throughput: float = 0.0
    osl_sources: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Stat] = Field(default_factory=dict)
    server: ServerMetrics | None = None
    client: ClientHealth | None = None
    valid: bool = True
    """False when the client could not keep up (see ``client.reasons``)."""
    validity: list[ValidityCheck] = Field(default_factory=list)
    steady: SteadyState | None = None
    split: ClientServerSplit | None = None
    compat: dict[str, dict[str, Stat]] = Field(default_factory=dict)
    """This point's numbers under other tools' definitions: vllm, aiperf, genai-perf,
    guidellm -> their metric name -> statistics."""
    compat_scalars: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Their throughputs and durations, same keys."""
    goodput: float | None = None
    """Requests/s that met every --slo bound (DistServe / vLLM bench goodput)."""

    def stat(self, metric: str, stat: str = "mean") -> float | None:
        found = self.metrics.get(metric)
        return found.get(stat) if found else None


class SweepResult(BaseModel):
    """--sweep-until-saturation: how the sweep ended and where the knee is."""

    by: str
    """concurrency or rate."""
    stop_reason: str
    knee_label: str | None = None
    knee_x: float | None = None
    slo: dict[str, float] = Field(default_factory=dict)
    """metric:stat -> upper bound in ms, e.g. {"ttft_ms:p90": 2000}."""
    best_goodput: float | None = None
    best_goodput_label: str | None = None


class RunSummary(BaseModel):
    schema_: str = Field(default=SCHEMA, alias="schema")
    tool: str = "sparkstack"
    """Who measured: sparkstack, or aiperf / genai-perf for an imported export."""
    label: str = ""
    created: str = ""
    url: str = ""
    model: str = ""
    endpoint: str = "chat"
    scenario: str | None = None
    tokenizer: str = ""
    seed: int = 0
    fields_sent: list[str] = Field(default_factory=list)
    gateway: bool = False
    decode_ceiling_tok_s: float | None = None
    definitions: dict[str, str] = Field(default_factory=lambda: dict(DEFINITIONS))
    metric_definitions: dict[str, MetricDefinition] = Field(
        default_factory=lambda: dict(METRIC_DEFINITIONS)
    )
    compat_definitions: dict[str, dict[str, MetricDefinition]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in COMPAT_DEFINITIONS.items()}
    )
    calibration: Calibration | None = None
    sweep: SweepResult | None = None
    points: list[PointSummary] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True}

    def write(self, folder: Path) -> None:
        (folder / "summary.json").write_text(self.model_dump_json(indent=2, by_alias=True))
        write_summary_csv(folder / "summary.csv", self.points)

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchDataError(f"{path}: cannot read it ({exc})") from exc
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise BenchDataError(
                f"{path}: not a sparkstack summary.json ({where}: {first['msg']}); "
                "rerun the benchmark or give the run folder it came from"
            ) from None


def _values(records: list[RequestRecord], name: str) -> list[float]:
    values = (getattr(r, name) for r in records)
    return [float(v) for v in values if v is not None]


def summarise(point: PointSummary, records: list[RequestRecord]) -> PointSummary:
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    point.requests_sent = len(records)
    point.requests_ok = len(ok)
    point.requests_failed = len(failed)
    for record in failed:
        point.errors[record.error_kind] = point.errors.get(record.error_kind, 0) + 1
        if len(point.error_examples) < 5:
            point.error_examples.append(f"{record.error_kind}: {record.error}"[:300])
    for record in ok:
        point.osl_sources[record.osl_source] = point.osl_sources.get(record.osl_source, 0) + 1
    if records:
        first = min(r.start_s for r in records)
        last = max(
            r.start_s + (r.e2e_ms if r.ok and r.e2e_ms else r.close_ms or 0) / 1000 for r in records
        )
        point.duration_s = max(last - first, 1e-9)
    if ok and point.duration_s:
        out = sum(r.completion_tokens or 0 for r in ok)
        prompt = sum(r.prompt_tokens or 0 for r in ok)
        point.request_throughput = len(ok) / point.duration_s
        point.output_token_throughput = out / point.duration_s
        point.input_token_throughput = prompt / point.duration_s
        point.total_token_throughput = (out + prompt) / point.duration_s
    columns = {
        name: _values(ok, name)
        for name in (
            "ttft_ms",
            "ttfc_ms",
            "itl_ms",
            "tpot_ms",
            "e2e_ms",
            "output_tok_s",
            "prefill_tok_s",
            "prompt_tokens",
            "completion_tokens",
        )
    }
    columns["ttft_sched_ms"] = _values(ok, "ttft_sched_ms")
    columns["e2e_sched_ms"] = _values(ok, "e2e_sched_ms")
    columns["send_lag_ms"] = _values(records, "send_lag_ms")
    columns["client_lag_ms"] = _values(records, "client_lag_ms")
    columns["chunk_gap_ms"] = [gap for r in ok for gap in r.chunk_gaps_ms]
    columns["decode_tok_s"] = [1000 / v for v in columns["itl_ms"] if v > 0]
    columns["tokens_per_event"] = [
        (r.completion_tokens or 0) / r.token_events for r in ok if r.token_events
    ]
    for name, values in columns.items():
        stat = describe(values, ci=name in CI_METRICS)
        if stat is not None:
            point.metrics[name] = stat
    return point


_STATS = ("n", "mean", "std", "min", "p50", "p90", "p95", "p99", "max")
_THROUGHPUTS = {
    "request_throughput": "requests/s",
    "output_token_throughput": "tokens/s",
    "input_token_throughput": "tokens/s",
    "total_token_throughput": "tokens/s",
    "duration_s": "s",
    "requests_ok": "requests",
    "requests_failed": "requests",
}


def write_summary_csv(path: Path, points: list[PointSummary]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["point", "concurrency", "rate", "metric", "stat", "value", "unit"])
        for p in points:
            head = [p.label, p.concurrency or "", p.rate or ""]
            for name, unit in _THROUGHPUTS.items():
                writer.writerow([*head, name, "value", repr(float(getattr(p, name))), unit])
            for name, stat in p.metrics.items():
                unit = METRIC_UNITS.get(name, "")
                for key in _STATS:
                    value = stat.get(key)
                    if value is not None:
                        writer.writerow([*head, name, key, repr(float(value)), unit])
                for key, (low, high) in (stat.ci95 or {}).items():
                    writer.writerow([*head, name, f"{key}_ci95_low", repr(low), unit])
                    writer.writerow([*head, name, f"{key}_ci95_high", repr(high), unit])
