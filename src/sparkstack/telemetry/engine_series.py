"""The few engine series the status document shows, read from an engine's own
Prometheus text: KV-cache usage, running and waiting requests, prompt and
generation token counters, TTFT and inter-token histograms. Engines without
metrics (llama.cpp's server) simply have none of these."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from sparkstack.telemetry.window import Buckets

# series name -> field; several engines (and engine versions) name the same thing
GAUGES = {
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv",
    "sglang:token_usage": "kv",
    "vllm:num_requests_running": "running",
    "sglang:num_running_reqs": "running",
    "vllm:num_requests_waiting": "waiting",
    "sglang:num_queue_reqs": "waiting",
    "vllm:prompt_tokens_total": "prompt",
    "sglang:prompt_tokens_total": "prompt",
    "vllm:generation_tokens_total": "generation",
    "sglang:generation_tokens_total": "generation",
}
HISTOGRAMS = {
    "vllm:time_to_first_token_seconds_bucket": "ttft",
    "sglang:time_to_first_token_seconds_bucket": "ttft",
    "vllm:inter_token_latency_seconds_bucket": "itl",
    "vllm:time_per_output_token_seconds_bucket": "itl",
    "sglang:inter_token_latency_seconds_bucket": "itl",
}
_PREFIXES = tuple({name.split(":", 1)[0] + ":" for name in (*GAUGES, *HISTOGRAMS)})


@dataclass(frozen=True)
class EngineFigures:
    kv_usage: float | None = None
    running: float | None = None
    waiting: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    ttft: Buckets | None = None
    itl: Buckets | None = None


def _le(labels: str) -> float | None:
    start = labels.find('le="')
    if start == -1:
        return None
    end = labels.find('"', start + 4)
    text = labels[start + 4 : end]
    return math.inf if text == "+Inf" else float(text)


def _buckets(cumulative: dict[float, float]) -> Buckets:
    bounds = tuple(sorted(cumulative))
    counts: list[int] = []
    previous = 0.0
    for bound in bounds:
        counts.append(int(cumulative[bound] - previous))
        previous = cumulative[bound]
    return Buckets(bounds, tuple(counts))


def _first(found: dict[str, float], table: dict[str, str], field: str) -> float | None:
    """The first series of ``table`` naming ``field`` that the engine serves (an
    engine may serve an old and a new name for the same figure: never both)."""
    for name, target in table.items():
        if target == field and name in found:
            return found[name]
    return None


def parse_engine_text(text: str) -> EngineFigures:
    """Sum each wanted series over its label sets (vLLM labels by engine index)."""
    found: dict[str, float] = defaultdict(float)
    hist: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        brace = line.find("{")
        space = line.rfind(" ")
        name = line[:brace] if brace != -1 else line[:space]
        if name not in GAUGES and name not in HISTOGRAMS:
            continue
        try:
            value = float(line[space + 1 :])
        except ValueError:
            continue
        if name in GAUGES:
            found[name] += value
        elif brace != -1:
            bound = _le(line[brace:space])
            if bound is not None:
                hist[name][bound] += value

    def histogram(field: str) -> Buckets | None:
        name = next((n for n, f in HISTOGRAMS.items() if f == field and n in hist), None)
        return _buckets(hist[name]) if name else None

    return EngineFigures(
        kv_usage=_first(found, GAUGES, "kv"),
        running=_first(found, GAUGES, "running"),
        waiting=_first(found, GAUGES, "waiting"),
        prompt_tokens=_first(found, GAUGES, "prompt"),
        generation_tokens=_first(found, GAUGES, "generation"),
        ttft=histogram("ttft"),
        itl=histogram("itl"),
    )
