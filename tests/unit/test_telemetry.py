"""Telemetry pieces without a gateway: histogram quantiles over bucket
differences, the per-minute window, engine series parsing, the event log, the
exports and the footprints file round trip."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from sparkstack.errors import TelemetryError
from sparkstack.supervisor.footprints import Footprint, append_footprint
from sparkstack.telemetry.document import (
    MachineStatus,
    ModelTelemetry,
    StatusDocument,
    WatchdogStatus,
)
from sparkstack.telemetry.engine_series import parse_engine_text
from sparkstack.telemetry.events import EventLog, stream_events
from sparkstack.telemetry.footprints import read_footprints, render_table, write_csv
from sparkstack.telemetry.grafana import dashboard, expressions
from sparkstack.telemetry.prometheus_config import scrape_config
from sparkstack.telemetry.top_view import View, render, sparkline
from sparkstack.telemetry.window import Buckets, ModelCounters, Sample, Window

BOUNDS = (0.1, 0.2, 0.4, math.inf)


def test_quantile_interpolates_inside_the_bucket_as_prometheus() -> None:
    buckets = Buckets(BOUNDS, (0, 10, 0, 0))
    assert buckets.quantile(0.5) == pytest.approx(0.15)
    assert buckets.quantile(0.95) == pytest.approx(0.195)
    assert Buckets(BOUNDS, (0, 0, 0, 4)).quantile(0.5) == 0.4  # +Inf: the last finite bound
    assert Buckets(BOUNDS, (0, 0, 0, 0)).quantile(0.5) is None


def test_minute_figures_are_differences_over_the_last_minute() -> None:
    window = Window()
    old = ModelCounters(
        requests=100,
        errors=1,
        ttft=Buckets(BOUNDS, (50, 0, 0, 0)),
        generation_tokens=1000.0,
        prompt_tokens=500.0,
    )
    window.add(Sample(at=0.0, models={"m": ModelCounters()}))  # older than the window
    window.add(Sample(at=40.0, models={"m": old}))
    new = ModelCounters(
        requests=130,
        errors=3,
        ttft=Buckets(BOUNDS, (50, 20, 0, 0)),
        generation_tokens=1600.0,
        prompt_tokens=800.0,
    )
    window.add(Sample(at=70.0, models={"m": new}))
    minute = window.minute("m")
    assert minute is not None
    assert minute.requests_per_s == 1.0
    assert minute.errors == 2
    assert minute.generation_tok_s == 20.0
    assert minute.prompt_tok_s == 10.0
    assert minute.ttft_p50_ms == pytest.approx(150.0)  # only the last minute's 20 requests
    assert minute.itl_p50_ms is None
    assert window.generation_history("m") == [None, 20.0]
    assert window.minute("unknown") is None


VLLM_TEXT = """\
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:generation_tokens_total{engine="0",model_name="m"} 640.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 320.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} 0.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.05",model_name="m"} 90.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 100.0
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 7.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 100.0
"""


def test_engine_series_takes_one_name_per_figure() -> None:
    figures = parse_engine_text(VLLM_TEXT)
    assert figures.kv_usage == 0.25  # not doubled by the deprecated alias
    assert (figures.running, figures.waiting) == (2.0, 1.0)
    assert (figures.prompt_tokens, figures.generation_tokens) == (320.0, 640.0)
    assert figures.itl == Buckets((0.01, 0.05, math.inf), (0, 90, 10))
    assert figures.ttft is None
    assert parse_engine_text("# llama.cpp serves no metrics\n").kv_usage is None


async def test_event_log_streams_backlog_then_live_and_ends_on_close() -> None:
    log = EventLog(size=3)
    for n in range(5):
        log.add("m", f"e{n}")
    assert [e.event for e in log.last(10)] == ["e2", "e3", "e4"]
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    task = asyncio.create_task(stream_events(log, write, backlog=1))
    await asyncio.sleep(0.01)
    log.add("m", "ready", "detail")
    await asyncio.sleep(0.01)
    log.close()
    await asyncio.wait_for(task, 1)
    assert [w.split(b"\n")[1] for w in written] == [b"event: model_event"] * 2
    assert b'"event":"e4"' in written[0] and b'"detail":"detail"' in written[1]


def test_prometheus_config_scrapes_metrics_with_the_key() -> None:
    config = yaml.safe_load(scrape_config("http://10.0.0.5:8080", key="sk-ss-x", interval="2s"))
    job = config["scrape_configs"][0]
    assert job["static_configs"] == [{"targets": ["10.0.0.5:8080"]}]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials": "sk-ss-x"}
    from_file = yaml.safe_load(scrape_config("127.0.0.1:9", key="k", key_file="/run/key"))
    assert from_file["scrape_configs"][0]["authorization"]["credentials_file"] == "/run/key"
    with pytest.raises(TelemetryError, match="not a gateway URL"):
        scrape_config("ftp://x")


def test_grafana_dashboard_covers_the_issue_list() -> None:
    board = dashboard()
    titles = {p["title"] for p in board["panels"]}  # type: ignore[attr-defined]
    assert {
        "Memory picture",
        "Requests/s",
        "Time to first token (engine)",
        "Inter-token latency (engine)",
        "Tokens/s",
        "KV-cache usage",
        "Queue depth",
    } <= titles
    assert "sparkstack_model_events_total" in board["annotations"]["list"][0]["expr"]  # type: ignore[index]
    assert len(expressions()) == len(set(expressions()))


def test_footprints_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "footprints.csv"
    with pytest.raises(TelemetryError, match="no footprints recorded yet"):
        read_footprints(path)
    row = Footprint(
        time="2026-11-23T10:00:00",
        model="smol",
        engine="llamacpp",
        planned_total_bytes=2**30,
        planned_kv_tokens=2048,
        engine_kv_tokens=2048,
        rss_bytes=2**29,
        gpu_bytes=None,
        ready_seconds=0.61,
        warmup_seconds=0.05,
    )
    append_footprint(path, row)
    append_footprint(path, Footprint(**{**row.__dict__, "model": "other"}))
    assert read_footprints(path, "smol") == [row]
    assert write_csv(read_footprints(path)) == path.read_bytes().decode()
    table = render_table(read_footprints(path))
    assert "smol" in table and "0.50" in table and "1.00" in table


def _document() -> StatusDocument:
    def model(name: str, state: str, held: int) -> ModelTelemetry:
        return ModelTelemetry(
            name=name,
            engine="llamacpp",
            state=state,
            policy="always_on",
            aliases=[],
            runtime="process",
            port=None,
            pid=None,
            base_url="",
            error=None,
            ready_seconds=None,
            planned_bytes=held,
            held_bytes=held,
            measured_bytes=None,
            rss_bytes=None,
            kv_cache_usage=None,
            running=0,
            waiting=0,
            prompt_tok_s=None,
            generation_tok_s=4.0,
            ttft_p50_ms=12.0,
            ttft_p95_ms=30.0,
            itl_p50_ms=None,
            itl_p95_ms=None,
            requests_per_s=0.5,
            errors_last_minute=0,
            requests_total=30,
            errors_total=0,
            generation_history=[1.0, None, 4.0],
            last_events=[],
        )

    machine = MachineStatus(
        total_bytes=100 * 2**30,
        available_bytes=60 * 2**30,
        host_reserve_bytes=20 * 2**30,
        watchdog=WatchdogStatus(state="ok"),
    )
    return StatusDocument(
        time=0.0,
        uptime_s=1.0,
        machine=machine,
        models=[model("brain", "ready", 30 * 2**30), model("sprinter", "stopped", 0)],
        events=[],
    )


def test_top_draws_a_segment_per_loaded_model_and_the_unreachable_line() -> None:
    console = Console(width=120, record=True, color_system=None)
    view = View(url="http://spark:8080", selected=1)
    console.print(render(_document(), view, 118))
    text = console.export_text()
    assert "brain 30.00 GiB" in text and "host reserve 20.00 GiB" in text
    assert "free 40.00 GiB" in text and "other use 10.00 GiB" in text
    assert "sprinter" not in text.split("memory")[1].split("MODEL")[0]  # holds nothing
    assert "▶" in next(line for line in text.splitlines() if "sprinter" in line)
    bar = next(line for line in text.splitlines() if "█" in line)
    assert len(bar.strip()) <= 118
    view.unreachable_since, view.problem = 3600.0, "no answer"
    console = Console(width=120, record=True, color_system=None)
    console.print(render(_document(), view, 118))
    assert "unreachable since" in console.export_text()
    assert sparkline([0.0, None, 8.0]) == "▁ █"
