"""The gateway's Prometheus text (issue 18: unit tests for metrics): counters,
cumulative histogram buckets, label escaping, and engine series relabelled with
their model with HELP/TYPE kept once per family."""

from __future__ import annotations

from sparkstack.gateway.metrics import BUCKETS, GatewayMetrics, relabel


def test_render_counts_requests_errors_and_cumulative_buckets() -> None:
    metrics = GatewayMetrics()
    metrics.request_done("smol", "/v1/chat/completions", 200, 0.004)
    metrics.request_done("smol", "/v1/chat/completions", 200, 0.3)
    metrics.error("smol", "client_disconnect")
    metrics.event('we"ird', "ready")
    metrics.host["memory_available_bytes"] = 5.0
    text = metrics.render()
    assert (
        'sparkstack_requests_total{model="smol",route="/v1/chat/completions",status="200"} 2'
        in text
    )
    assert 'sparkstack_errors_total{model="smol",kind="client_disconnect"} 1' in text
    assert 'sparkstack_model_events_total{model="we\\"ird",event="ready"} 1' in text
    first = f'sparkstack_request_duration_seconds_bucket{{model="smol",le="{BUCKETS[0]!r}"}} 1'
    assert first in text
    assert 'sparkstack_request_duration_seconds_bucket{model="smol",le="+Inf"} 2' in text
    assert 'sparkstack_request_duration_seconds_count{model="smol"} 2' in text
    assert "sparkstack_memory_available_bytes 5.0" in text
    assert text.count("# TYPE sparkstack_requests_total counter") == 1


def test_relabel_adds_the_model_and_keeps_meta_once() -> None:
    engine = (
        "# HELP vllm:num_requests_running Running.\n# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0"} 1.0\nvllm:cache_hits 3\nempty{} 4\n'
    )
    seen: set[str] = set()
    first = relabel(engine, "minilm", seen)
    assert 'vllm:num_requests_running{model="minilm",engine="0"} 1.0' in first
    assert 'vllm:cache_hits{model="minilm"} 3' in first
    assert 'empty{model="minilm"} 4' in first
    second = relabel(engine, "other", seen)
    assert not any(line.startswith("#") for line in second)
