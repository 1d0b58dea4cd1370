"""TensorRT-LLM (``trtllm-serve``, PyTorch backend) and its memory model.

``kv_cache_config.free_gpu_memory_fraction`` is a fraction of the memory free
after the weights, activations and everything else already on the device
(``KvCacheCreator`` in tensorrt_llm/_torch/pyexecutor/_util.py): a model started
later sees less free memory, so start order matters and the fraction is
computed from what the models started before it leave.

Launch: ``trtllm-serve MODEL --host --port --max_batch_size --max_seq_len
--extra_llm_api_options FILE`` (tensorrt_llm/commands/serve.py), the YAML written
from the plan (``kv_cache_config``: ``free_gpu_memory_fraction``, ``max_tokens``
when the pool is pinned, ``dtype``; ``cuda_graph_config: null`` for eager mode) and
the catalog recipe's options (``cuda_graph_config.enable_padding``,
``disable_overlap_scheduler``, ...; llmapi/llm_args.py). Readiness on ``/health``;
its ``/metrics`` is JSON iteration stats, not Prometheus text, so it is not relayed.
trtllm-serve has no API key: on host networking it is reachable from this host.
"""

from __future__ import annotations

import yaml

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
from sparkstack.modelfacts.catalog import find_recipe
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.planner.kv_cache import kv_bytes_per_token
from sparkstack.planner.machine import GIB, MachineProfile
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

TOKENS_PER_BLOCK = 32
FRACTION_ENV = "SPARKSTACK_TRTLLM_FREE_FRACTION"
"""Carries the planned fraction to ``launch``, which writes it into the options file."""
MAX_TOKENS_ENV = "SPARKSTACK_TRTLLM_MAX_TOKENS"
"""Carries a pinned pool (``kv_cache_gib``) as ``kv_cache_config.max_tokens``."""
_PLAN_ENV = (FRACTION_ENV, MAX_TOKENS_ENV)


def options_yaml(spec: ModelSpec, planned: MemoryEstimate | None) -> dict[str, object]:
    """The --extra_llm_api_options document: the plan's KV settings over the recipe's."""
    recipe = find_recipe(spec.model or "", spec.engine) if spec.recipe else None
    options: dict[str, object] = dict(recipe.options) if recipe else {}
    kv: dict[str, object] = {"dtype": "fp8" if spec.kv_cache_dtype == "fp8" else "auto"}
    env = planned.engine_env if planned else {}
    if FRACTION_ENV in env:
        kv["free_gpu_memory_fraction"] = float(env[FRACTION_ENV])
    if MAX_TOKENS_ENV in env:
        kv["max_tokens"] = int(env[MAX_TOKENS_ENV])
    options["kv_cache_config"] = kv
    if spec.enforce_eager:
        options["cuda_graph_config"] = None  # no CUDA graphs: no first-request spike
    return options


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
        options = settings.state_dir / f"{spec.name}-trtllm-options.yaml"
        text = yaml.safe_dump(options_yaml(spec, planned), sort_keys=False)
        head = [*command, source, "--host", "127.0.0.1", "--port", str(port)]
        extra = ["--extra_llm_api_options", str(options)]
        launch = finish_launch(spec, source, head, planned, "/health", extra, {str(options): text})
        env = {k: v for k, v in launch.env.items() if k not in _PLAN_ENV}
        return LaunchSpec(launch.argv, env, launch.ready_path, launch.files)

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
            engine_env={
                FRACTION_ENV: f"{fraction:.4f}",
                **(
                    {MAX_TOKENS_ENV: str(pool // per_token)}
                    if spec.kv_cache_gib and per_token
                    else {}
                ),
            },  # fmt: skip
            notes=[f"free_gpu_memory_fraction {fraction:.4f} of what is free after its weights"],
        )
