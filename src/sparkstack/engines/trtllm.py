"""TensorRT-LLM (``trtllm-serve``, PyTorch backend) and its memory model.

``kv_cache_config.free_gpu_memory_fraction`` is a fraction of the memory free
after the weights, activations and everything else already on the device
(``KvCacheCreator`` in tensorrt_llm/_torch/pyexecutor/_util.py): a model started
later sees less free memory, so start order matters and the fraction is
computed from what the models started before it leave.
"""

from __future__ import annotations

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
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.planner.kv_cache import kv_bytes_per_token
from sparkstack.planner.machine import GIB, MachineProfile
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

TOKENS_PER_BLOCK = 32
FRACTION_ENV = "SPARKSTACK_TRTLLM_FREE_FRACTION"
"""Carries the planned fraction to ``launch``, which writes it into the options file."""


@register_engine
class TrtLlmEngine(EngineAdapter):
    name = "trtllm"
    default_image = "nvcr.io/nvidia/tensorrt-llm/release:spark-single-gpu-dev"
    container_command = ["trtllm-serve"]

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None
        source = resolve_model_source(spec.model)
        command = list(spec.command) if spec.command else ["trtllm-serve"]
        extra: list[str] = []
        fraction = planned.engine_env.get(FRACTION_ENV) if planned else None
        if fraction:
            options = settings.state_dir / f"{spec.name}-trtllm-options.yaml"
            options.parent.mkdir(parents=True, exist_ok=True)
            options.write_text(
                f"kv_cache_config:\n  free_gpu_memory_fraction: {fraction}\n", encoding="utf-8"
            )
            extra = ["--extra_llm_api_options", str(options)]
        head = [*command, source, "--host", "127.0.0.1", "--port", str(port)]
        return finish_launch(spec, source, head, planned, "/health", extra)

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        max_len, sequences, dtype_bytes = planned_shape(spec, facts)
        per_token = kv_bytes_per_token(facts, dtype_bytes)
        blocks = -(-max_len // TOKENS_PER_BLOCK) * sequences
        pool = (
            int(spec.kv_cache_gib * GIB)
            if spec.kv_cache_gib
            else blocks * TOKENS_PER_BLOCK * per_token
        )
        overhead = CUDA_RUNTIME_BYTES + activation_peak(facts, 8192)
        free_after_weights = free_at_start - facts.weight_bytes - overhead
        if free_after_weights <= 0:
            raise EngineError(
                f"models.{spec.name}: nothing is free for TensorRT-LLM's KV cache after its "
                "weights when it starts; start it earlier or shrink the models before it"
            )
        fraction = min(pool / free_after_weights, 0.99)
        args = ["--max_seq_len", str(max_len), "--max_batch_size", str(sequences)]
        return MemoryEstimate(
            weights_bytes=facts.weight_bytes,
            kv_bytes_per_token=per_token,
            kv_bytes=pool,
            kv_tokens=pool // per_token if per_token else 0,
            overhead_bytes=overhead,
            spike_bytes=graph_spike(facts, machine, spec.enforce_eager),
            engine_args=args,
            engine_env={FRACTION_ENV: f"{fraction:.4f}"},
            notes=[f"free_gpu_memory_fraction {fraction:.4f} of what is free after its weights"],
        )
