"""SGLang (``python -m sglang.launch_server``) and its memory model.

``--mem-fraction-static`` = (weights + KV pool) / total GPU memory
(server_args ``_handle_gpu_memory_settings``); the KV pool holds
``max_total_num_tokens = pool // cell_size`` tokens with cell_size = KV bytes per
token over all attention layers (``ModelRunner.profile_max_num_token``).
"""

from __future__ import annotations

import math

from sparkstack.engines.base import (
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
    planned_shape,
)
from sparkstack.engines.gpu_estimates import CUDA_RUNTIME_BYTES, activation_peak, graph_spike
from sparkstack.engines.registry import register_engine
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.planner.kv_cache import kv_bytes_per_token, layer_bytes_per_token
from sparkstack.planner.machine import GIB, MachineProfile
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

CHUNKED_PREFILL = 8192


@register_engine
class SglangEngine(EngineAdapter):
    name = "sglang"
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
        head = [*command, "--model-path", source, "--served-model-name", spec.name,
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        return finish_launch(spec, source, head, planned, "/health")

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
