"""SGLang (``python -m sglang.launch_server``): launch, sleep, and its memory model.

The engine key: SGLang takes it only as ``--api-key`` (server_args.py), which would
show in ``ps``; sparkstack starts ``launch_server`` through a two-line ``-c`` shim
that appends ``--api-key`` from the environment to ``sys.argv`` inside the
process (``/proc/PID/cmdline`` never holds it), then runs the module as
``__main__``. Sleep: ``POST /release_memory_occupation`` and
``/resume_memory_occupation`` (http_server.py), which need
``--enable-memory-saver`` at start.

``--mem-fraction-static`` = (weights + KV pool) / total GPU memory
(server_args ``_handle_gpu_memory_settings``); the KV pool holds
``max_total_num_tokens = pool // cell_size`` tokens with cell_size = KV bytes per
token over all attention layers (``ModelRunner.profile_max_num_token``).
"""

from __future__ import annotations

import math

import aiohttp

from sparkstack.engines.base import (
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
    planned_shape,
)
from sparkstack.engines.gpu_estimates import CUDA_RUNTIME_BYTES, activation_peak, graph_spike
from sparkstack.engines.registry import register_engine
from sparkstack.errors import EngineError
from sparkstack.machine import GIB, MachineProfile
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.kv_layout import kv_bytes_per_token, layer_bytes_per_token
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

CHUNKED_PREFILL = 8192
KEY_ENV = "SPARKSTACK_ENGINE_KEY"
MODULE = "sglang.launch_server"
KEY_SHIM = (
    "import os, runpy, sys; "
    f"sys.argv.extend(['--api-key', os.environ['{KEY_ENV}']]); "
    f"runpy.run_module('{MODULE}', None, '__main__', True)"
)
"""Gives SGLang its key from the environment: argv stays free of it."""
_CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=600)


def with_key_shim(command: list[str]) -> list[str]:
    """``PYTHON -m sglang.launch_server`` -> ``PYTHON -c SHIM`` (other commands as given)."""
    if command[-2:] == ["-m", MODULE]:
        return [*command[:-2], "-c", KEY_SHIM]
    return command


@register_engine
class SglangEngine(EngineAdapter):
    name = "sglang"
    internal_key_env = KEY_ENV
    supports_sleep = True
    default_image = "lmsys/sglang:spark"
    container_command = ["python3", "-m", "sglang.launch_server"]
    metrics_path = "/metrics"

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="sglang",
            module="sglang.launch_server",
            install_hint="install SGLang into SPARKSTACK_HOME/engines/sglang",
        )
        head = [*with_key_shim(command), "--model-path", source, "--served-model-name", spec.name,
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        return finish_launch(spec, source, head, planned, "/health")

    def can_sleep(self, planned: MemoryEstimate | None) -> bool:
        """Only when started with the memory saver (``sleep_mode: true``)."""
        return planned is not None and "--enable-memory-saver" in planned.engine_args

    def sleep_level(self, unified: bool) -> int:
        """SGLang has one level: weights and KV cache are both released (like vLLM's 2)."""
        return 2

    async def sleep(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        """Release the weights and the KV cache (both, at any level: SGLang has one)."""
        await _post(session, f"{base_url}/release_memory_occupation", api_key)

    async def wake_up(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        await _post(session, f"{base_url}/resume_memory_occupation", api_key)

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        max_len, sequences, dtype_bytes = planned_shape(spec, facts)
        cell = int(
            sum(
                layer_bytes_per_token(layer, dtype_bytes)
                for layer in facts.layers
                if layer.kind in (LayerKind.FULL, LayerKind.SLIDING, LayerKind.MLA)
            )
        )
        pool = int(spec.kv_cache_gib * GIB) if spec.kv_cache_gib else cell * max_len * sequences
        tokens = pool // cell if cell else 0
        fraction = math.ceil((facts.weight_bytes + pool) / machine.total_bytes * 1000) / 1000
        args = [
            "--context-length",
            str(max_len),
            "--max-running-requests",
            str(sequences),
            "--mem-fraction-static",
            f"{fraction:.3f}",
            "--max-total-tokens",
            str(tokens),
        ]
        if spec.kv_cache_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8_e4m3"]
        if spec.enforce_eager:
            args.append("--disable-cuda-graph")
        if spec.sleep_mode:
            args.append("--enable-memory-saver")
        return MemoryEstimate(
            weights_bytes=facts.weight_bytes,
            kv_bytes_per_token=kv_bytes_per_token(facts, dtype_bytes),
            kv_bytes=pool,
            kv_tokens=tokens,
            overhead_bytes=CUDA_RUNTIME_BYTES + activation_peak(facts, CHUNKED_PREFILL),
            spike_bytes=graph_spike(facts, machine, spec.enforce_eager),
            engine_args=args,
            notes=["SGLang's KV pool is device-wide: other processes on the GPU shrink it"],
        )


async def _post(session: aiohttp.ClientSession, url: str, api_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with session.post(url, json={}, headers=headers, timeout=_CONTROL_TIMEOUT) as resp:
            if resp.status != 200:
                text = await resp.text()
                raise EngineError(f"POST {url}: HTTP {resp.status}: {text[:200]}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EngineError(f"POST {url}: {exc}") from exc
