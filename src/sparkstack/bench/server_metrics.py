"""What the server says about itself: whether it is a sparkstack gateway (its
/v1/models entries are ``owned_by: sparkstack``), the model's decode ceiling from
the planner, the model's context length, and engine-side figures sampled from the
gateway's /metrics once a second during each point (KV-cache usage, queue), plus
the engine's own counters and histograms differenced over the point: prefix-cache
hits / queries, and its TTFT and end-to-end latency (sum / count), which the run
sets beside the client's to split client + network + gateway time from engine time."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import aiohttp

from sparkstack.bench.summary import ServerMetrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)\{([^}]*)\}\s+(\S+)")
_SERIES = {
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv",
    "sglang:token_usage": "kv",
    "vllm:num_requests_waiting": "waiting",
    "sglang:num_queue_reqs": "waiting",
    "vllm:num_requests_running": "running",
    "sglang:num_running_reqs": "running",
    "vllm:prefix_cache_hits_total": "cache_hits",
    "vllm:prefix_cache_queries_total": "cache_queries",
    "vllm:time_to_first_token_seconds_sum": "ttft_sum",
    "vllm:time_to_first_token_seconds_count": "ttft_count",
    "sglang:time_to_first_token_seconds_sum": "ttft_sum",
    "sglang:time_to_first_token_seconds_count": "ttft_count",
    "vllm:e2e_request_latency_seconds_sum": "e2e_sum",
    "vllm:e2e_request_latency_seconds_count": "e2e_count",
    "sglang:e2e_request_latency_seconds_sum": "e2e_sum",
    "sglang:e2e_request_latency_seconds_count": "e2e_count",
}
_COUNTERS = ("cache_hits", "cache_queries", "ttft_sum", "ttft_count", "e2e_sum", "e2e_count")


@dataclass
class ServerInfo:
    reachable: bool = False
    status: int = 0
    gateway: bool = False
    model_known: bool = True
    canonical_model: str = ""
    max_model_len: int | None = None
    decode_ceiling_tok_s: float | None = None
    models: list[str] = field(default_factory=list)


async def server_info(
    session: aiohttp.ClientSession, url: str, model: str, headers: dict[str, str]
) -> ServerInfo:
    info = ServerInfo(canonical_model=model)
    try:
        async with session.get(url + "/models", headers=headers) as response:
            info.status = response.status
            if response.status != 200:
                return info
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return info
    info.reachable = True
    entries = [e for e in data.get("data", []) if isinstance(e, dict)]
    info.models = [str(e.get("id")) for e in entries]
    info.gateway = bool(entries) and all(e.get("owned_by") == "sparkstack" for e in entries)
    mine = next((e for e in entries if e.get("id") == model), None)
    info.model_known = mine is not None
    if mine is not None:
        info.canonical_model = str(mine.get("alias_of") or model)
        length = mine.get("max_model_len")
        info.max_model_len = int(length) if isinstance(length, int) else None
        ceiling = mine.get("decode_ceiling_tok_s")
        info.decode_ceiling_tok_s = float(ceiling) if isinstance(ceiling, int | float) else None
    return info


def parse_metrics(text: str, model: str) -> dict[str, float]:
    """kv / waiting / running of ``model`` from a Prometheus text page."""
    found: dict[str, float] = {}
    needle = f'model="{model}"'
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in _SERIES or needle not in match.group(2):
            continue
        key = _SERIES[match.group(1)]
        found[key] = found.get(key, 0.0) + float(match.group(3))
    return found


class MetricsSampler:
    """Samples the gateway's /metrics every ``period`` s while a point runs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        origin: str,
        model: str,
        headers: dict[str, str],
        period: float = 1.0,
    ) -> None:
        self._session, self._url, self._model = session, origin + "/metrics", model
        self._headers, self._period = headers, period
        self._samples: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        try:
            async with self._session.get(self._url, headers=self._headers) as response:
                if response.status == 200:
                    self._samples.append(parse_metrics(await response.text(), self._model))
        except (aiohttp.ClientError, TimeoutError):
            pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            await self._sample()

    async def start(self) -> None:
        """First sample before the point's load begins (the counters' baseline)."""
        self._samples = []
        await self._sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> ServerMetrics:
        if self._task is not None:
            self._task.cancel()
        await self._sample()
        result = ServerMetrics(samples=len(self._samples))
        kv = [s["kv"] for s in self._samples if "kv" in s]
        if kv:
            result.kv_cache_usage_max = max(kv)
            result.kv_cache_usage_mean = sum(kv) / len(kv)
        waiting = [s["waiting"] for s in self._samples if "waiting" in s]
        running = [s["running"] for s in self._samples if "running" in s]
        result.requests_waiting_max = max(waiting) if waiting else None
        result.requests_running_max = max(running) if running else None
        _deltas(result, self._samples)
        return result


def _deltas(result: ServerMetrics, samples: list[dict[str, float]]) -> None:
    """Counter and histogram differences between the first and last sample."""
    if len(samples) < 2:
        return
    first, last = samples[0], samples[-1]
    delta = {k: last[k] - first[k] for k in _COUNTERS if k in first and k in last}
    if delta.get("cache_queries", 0) > 0:
        result.prefix_cache_hit_rate = delta.get("cache_hits", 0.0) / delta["cache_queries"]
    if delta.get("ttft_count", 0) > 0:
        result.engine_ttft_ms_mean = 1000 * delta["ttft_sum"] / delta["ttft_count"]
        result.engine_requests = int(delta["ttft_count"])
    if delta.get("e2e_count", 0) > 0:
        result.engine_e2e_ms_mean = 1000 * delta["e2e_sum"] / delta["e2e_count"]
