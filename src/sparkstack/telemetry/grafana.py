"""``sparkstack export grafana``: a Grafana dashboard (JSON model, schema 39)
over the series a gateway's ``/metrics`` serves: the memory picture, per-model
request rate and errors, gateway and engine TTFT and inter-token quantiles from
the histograms, tokens/s, KV-cache usage, queue depth and model states, with
lifecycle events as annotations. ``PANELS`` is also what the tests run against a
real Prometheus, expression by expression."""

from __future__ import annotations

import json
from dataclasses import dataclass

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    stacked: bool = False


def _quantiles(series: str, who: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (model, le) (rate({series}_bucket[1m])))",
            f"{{{{model}}}} {who} p{int(q * 100)}",
        )
        for q in (0.5, 0.95)
    )


ANNOTATION = Query("changes(sparkstack_model_events_total[1m]) > 0", "{{model}} {{event}}")
PANELS = (
    Panel(
        "Memory picture",
        "bytes",
        (
            Query("sparkstack_model_memory_held_bytes", "{{model}}"),
            Query("sparkstack_memory_available_bytes - sparkstack_memory_floor_bytes", "free"),
            Query("sparkstack_memory_host_reserve_bytes", "host reserve"),
        ),
        stacked=True,
    ),
    Panel(
        "Memory: planned vs measured",
        "bytes",
        (
            Query("sparkstack_model_memory_held_bytes", "{{model}} planned"),
            Query("sparkstack_model_memory_measured_bytes", "{{model}} measured"),
            Query("sparkstack_memory_total_bytes", "machine total"),
        ),
    ),
    Panel(
        "Requests/s",
        "reqps",
        (Query("sum by (model) (rate(sparkstack_requests_total[1m]))", "{{model}}"),),
    ),
    Panel(
        "Errors/s",
        "reqps",
        (
            Query(
                "sum by (model) (rate(sparkstack_errors_total[1m])) or "
                "sum by (model) (rate(sparkstack_requests_total[1m])) * 0",
                "{{model}}",
            ),
        ),
    ),
    Panel(
        "Time to first token (gateway)",
        "s",
        _quantiles("sparkstack_time_to_first_token_seconds", "gateway"),
    ),
    Panel(
        "Request duration (gateway)",
        "s",
        _quantiles("sparkstack_request_duration_seconds", "gateway"),
    ),
    Panel(
        "Time to first token (engine)",
        "s",
        _quantiles("vllm:time_to_first_token_seconds", "engine"),
    ),
    Panel(
        "Inter-token latency (engine)",
        "s",
        _quantiles("vllm:inter_token_latency_seconds", "engine"),
    ),
    Panel(
        "Tokens/s",
        "short",
        (
            Query("sum by (model) (rate(vllm:prompt_tokens_total[1m]))", "{{model}} prompt"),
            Query(
                "sum by (model) (rate(vllm:generation_tokens_total[1m]))", "{{model}} generation"
            ),
        ),
    ),
    Panel(
        "KV-cache usage",
        "percentunit",
        (Query("max by (model) (vllm:kv_cache_usage_perc)", "{{model}}"),),
    ),
    Panel(
        "Queue depth",
        "short",
        (
            Query("sum by (model) (vllm:num_requests_running)", "{{model}} running (engine)"),
            Query("sum by (model) (vllm:num_requests_waiting)", "{{model}} waiting (engine)"),
            Query(
                "sum by (model) (sparkstack_requests_in_flight)", "{{model}} in flight (gateway)"
            ),
            Query(
                "sum by (model) (sparkstack_requests_queued) or "
                "sum by (model) (sparkstack_requests_in_flight) * 0",
                "{{model}} waiting to wake",
            ),
        ),
    ),
    Panel("Model state", "short", (Query("sparkstack_model_state == 1", "{{model}} {{state}}"),)),
)


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard, annotation included, once each."""
    every = [q.expr for panel in PANELS for q in panel.queries] + [ANNOTATION.expr]
    return list(dict.fromkeys(every))


def _panel(panel: Panel, index: int) -> dict[str, object]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": {
                    "stacking": {"mode": "normal" if panel.stacked else "none"},
                    "fillOpacity": 60 if panel.stacked else 10,
                },
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
            }
            for n, q in enumerate(panel.queries)
        ],
    }


def dashboard(title: str = "sparkstack") -> dict[str, object]:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "title": title,
        "uid": "sparkstack",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "tags": ["sparkstack"],
        "annotations": {
            "list": [
                {
                    "name": "model lifecycle",
                    "enable": True,
                    "iconColor": "orange",
                    "datasource": DATASOURCE,
                    "expr": ANNOTATION.expr,
                    "step": "15s",
                    "titleFormat": ANNOTATION.legend,
                    "textFormat": "{{model}}: {{event}}",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": [_panel(panel, i) for i, panel in enumerate(PANELS)],
    }


def dashboard_json(title: str = "sparkstack") -> str:
    return json.dumps(dashboard(title), indent=2) + "\n"
