"""Warm-up and footprints: after an engine is ready, one tiny request on the
path clients use (so first-request JIT and graph capture happen before users
arrive), then a CSV row of what the model really holds next to the plan's
prediction - the data users need to plan multi-model stacks."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import aiohttp

from sparkstack.supervisor.cgroup_memory import cgroup_bytes
from sparkstack.supervisor.process import process_tree, tree_rss
from sparkstack.supervisor.runtime import ModelRuntime

_WARMUP_TIMEOUT = aiohttp.ClientTimeout(total=600)


async def warm_up(session: aiohttp.ClientSession, runtime: ModelRuntime) -> float | None:
    """A 3-token chat request (or an embedding, for pooling models); seconds taken, or
    None when the engine took neither."""
    headers = {"Authorization": f"Bearer {runtime.api_key}"} if runtime.api_key else None
    attempts = (
        ("/v1/chat/completions",
         {"model": runtime.upstream_model, "max_tokens": 3,
          "messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/embeddings", {"model": runtime.upstream_model, "input": "Hi"}),
    )  # fmt: skip
    for path, body in attempts:
        started = time.perf_counter()
        try:
            async with session.post(
                runtime.base_url + path, json=body, headers=headers, timeout=_WARMUP_TIMEOUT
            ) as response:
                await response.read()
                if response.status == 200:
                    return time.perf_counter() - started
        except (aiohttp.ClientError, TimeoutError):
            continue
    return None


@dataclass
class Footprint:
    time: str
    model: str
    engine: str
    planned_total_bytes: int
    planned_kv_tokens: int
    engine_kv_tokens: int | None
    rss_bytes: int
    gpu_bytes: int | None
    ready_seconds: float | None
    warmup_seconds: float | None
    cgroup_bytes: int | None = None
    """A container's memory as its cgroup charges it (None for a native process)."""


def engine_kv_tokens(runtime: ModelRuntime, log_path: Path) -> int | None:
    """The KV size the engine itself reported in its log (last start), read by its
    adapter (the only place that knows the engine's log lines)."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return runtime.adapter.kv_tokens_from_log(text.rsplit("=== sparkstack starts", 1)[-1])


def gpu_bytes(pids: set[int]) -> int | None:
    """NVML per-process memory of these pids (discrete GPUs), None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (no NVIDIA driver: no figure)
        return None
    try:
        total = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in pids:
                    total += int(proc.usedGpuMemory or 0)
        return total
    except pynvml.NVMLError:
        return None  # GB10: no per-process memory figures
    finally:
        pynvml.nvmlShutdown()


def measure(runtime: ModelRuntime, planned_total: int, planned_kv: int,
            warmup: float | None) -> Footprint:  # fmt: skip
    procs = process_tree(runtime.pid) if runtime.pid else []
    rss = tree_rss(runtime.pid) or 0
    log_path = runtime.process.log_path if runtime.process else None
    return Footprint(
        time=time.strftime("%Y-%m-%dT%H:%M:%S"),
        model=runtime.name,
        engine=runtime.spec.engine,
        planned_total_bytes=planned_total,
        planned_kv_tokens=planned_kv,
        engine_kv_tokens=engine_kv_tokens(runtime, log_path) if log_path else None,
        rss_bytes=rss,
        gpu_bytes=gpu_bytes({p.pid for p in procs}),
        ready_seconds=runtime.ready_seconds,
        warmup_seconds=warmup,
        cgroup_bytes=cgroup_bytes(runtime.pid) if runtime.image and runtime.pid else None,
    )


def append_footprint(path: Path, row: Footprint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(Footprint)])
        if new:
            writer.writeheader()
        writer.writerow(asdict(row))
