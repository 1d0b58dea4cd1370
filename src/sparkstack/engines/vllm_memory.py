"""vLLM's memory model: how it groups layers into KV-cache blocks, how many
tokens a KV pool of N bytes holds (exactly what vLLM logs as ``KV cache size``),
and the flags that size the pool (``--kv-cache-memory-bytes`` on GPUs,
``VLLM_CPU_KVCACHE_SPACE`` on the CPU build)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from sparkstack.engines.base import MemoryEstimate, planned_shape
from sparkstack.engines.gpu_estimates import CUDA_RUNTIME_BYTES, activation_peak, graph_spike
from sparkstack.errors import EngineError
from sparkstack.machine import GIB, MachineProfile
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.kv_layout import (
    kv_bytes_per_token,
    layer_bytes_per_token,
    state_bytes_per_sequence,
)
from sparkstack.stack.schema import ModelSpec

VLLM_BLOCK_SIZE = 16
"""vLLM CacheConfig.DEFAULT_BLOCK_SIZE."""
MAX_NUM_BATCHED_TOKENS = 2048
"""vLLM's default on GPUs under 70 GiB and on GB10, whose NVML total fails
(engine/arg_utils.py get_batch_defaults)."""
CPU_RUNTIME_BYTES = 1 * GIB
"""Python + torch + vLLM workers on the CPU build, measured (process tree RSS
of the demo's minilm less its weights and KV)."""


def _block_size(machine: MachineProfile, facts: ModelFacts) -> int:
    """16 tokens on GPUs; 128 on the CPU build, except MLA models: its reference
    MLA kernel takes 16 (platforms/cpu.py; hosts with AMX tiles keep 128)."""
    if machine.device != "cpu" or facts.count(LayerKind.MLA):
        return 16
    return 128


@dataclass(frozen=True)
class VllmKv:
    block_size: int
    bytes_per_block: int
    num_blocks: int
    blocks_per_request: int
    kv_tokens: int
    max_concurrency: float

    @property
    def kv_bytes(self) -> int:
        return self.bytes_per_block * self.num_blocks


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def vllm_groups(facts: ModelFacts) -> tuple[int, dict[LayerKind, int]]:
    """vLLM's grouping of layers into KV-cache groups (v1/core/kv_cache_utils.py).

    Layers are grouped by spec; ``group_size`` is the smallest per-kind layer
    count, unless the largest is below 1.5x the smallest (then the largest, with
    padding layers). Returns (group_size, number of groups per kind).
    """
    counts = {
        kind: facts.count(kind)
        for kind in (LayerKind.FULL, LayerKind.SLIDING, LayerKind.MLA, LayerKind.STATE)
        if facts.count(kind)
    }
    if not counts:
        return 0, {}
    smallest, largest = min(counts.values()), max(counts.values())
    group_size = largest if largest < 1.5 * smallest else smallest
    return group_size, {kind: _cdiv(count, group_size) for kind, count in counts.items()}


def vllm_kv(
    facts: ModelFacts,
    kv_bytes: int,
    max_model_len: int,
    dtype_bytes: float,
    max_num_batched_tokens: int = 2048,
    block_size: int = VLLM_BLOCK_SIZE,
) -> VllmKv:
    """Blocks and reported tokens of vLLM's KV cache for ``kv_bytes`` of memory.

    Mirrors vLLM 0.32 ``get_kv_cache_config_from_groups``: every group shares one
    block id space; a block spans ``group_size`` layers, so
    ``bytes_per_block = group_size * page_size`` and
    ``num_blocks = kv_bytes // bytes_per_block``. The logged ``KV cache size: N
    tokens`` is ``int(max_concurrency * max_model_len)`` with
    ``max_concurrency = num_blocks / blocks_per_request``
    (``get_kv_cache_capacity``), where one request at ``max_model_len`` takes:

    * full / MLA group: ``cdiv(max_model_len, block_size)`` blocks;
    * sliding group: ``cdiv(min(window - 1 + max_num_batched_tokens, max_model_len),
      block_size) + 1`` (``SlidingWindowSpec.max_memory_usage_bytes``);
    * state group: ``2 + checkpoint`` blocks (``MambaSpec.max_memory_usage_bytes``
      in mamba_cache_mode "align", which prefix caching, on by default, selects;
      the Mamba2 mixer keeps 1 prefill-checkpoint block, GatedDeltaNet none).

    ``block_size`` is 16 on GPUs and 128 on vLLM's CPU backend
    (platforms/cpu.py ``check_and_update_config``). Hybrid models raise the
    attention block size so that one attention page holds a whole state page
    (``HybridAttentionMambaModelConfig``):
    ``block = 16 * cdiv(state_page, 16 * attention_page_per_token)``.
    """
    group_size, groups = vllm_groups(facts)
    if not groups:
        return VllmKv(block_size, 0, 0, 0, 0, 0.0)
    attn = [
        layer
        for layer in facts.layers
        if layer.kind in (LayerKind.FULL, LayerKind.SLIDING, LayerKind.MLA)
    ]
    per_token = max((layer_bytes_per_token(layer, dtype_bytes) for layer in attn), default=0.0)
    block = block_size
    state_pages = [
        state_bytes_per_sequence(layer, int(dtype_bytes) or 2, int(dtype_bytes) or 2)
        for layer in facts.layers
        if layer.kind is LayerKind.STATE
    ]
    page = int(per_token * block)
    if state_pages:
        state_page = max(state_pages)
        if per_token:
            block = block_size * _cdiv(state_page, int(block_size * per_token))
            page = int(per_token * block)
        else:
            page = state_page
    bytes_per_block = group_size * page
    num_blocks = kv_bytes // bytes_per_block if bytes_per_block else 0
    per_request = 0
    for kind, count in groups.items():
        if kind is LayerKind.SLIDING:
            window = max((layer.window or 0) for layer in attn)
            span = min(window - 1 + max_num_batched_tokens, max_model_len)
            per_request += count * (_cdiv(span, block) + 1)
        elif kind is LayerKind.STATE:
            # Prefix caching (on by default) puts hybrids in mamba_cache_mode
            # "align": 2 state blocks per request plus the prefill checkpoint.
            checkpoint = max(
                (layer.checkpoint_blocks for layer in facts.layers if layer.kind is kind),
                default=0,
            )
            per_request += count * (2 + checkpoint)
        else:
            per_request += count * _cdiv(max_model_len, block)
    concurrency = num_blocks / per_request if per_request else 0.0
    return VllmKv(
        block_size=block,
        bytes_per_block=bytes_per_block,
        num_blocks=num_blocks,
        blocks_per_request=per_request,
        kv_tokens=int(concurrency * max_model_len),
        max_concurrency=concurrency,
    )


def vllm_kv_bytes_for(
    facts: ModelFacts,
    max_model_len: int,
    sequences: int,
    dtype_bytes: float,
    mnbt: int = 2048,
    block_size: int = VLLM_BLOCK_SIZE,
) -> int:
    """The KV pool vLLM needs to hold ``sequences`` requests at ``max_model_len``."""
    one = vllm_kv(facts, 2**62, max_model_len, dtype_bytes, mnbt, block_size)
    return one.blocks_per_request * sequences * one.bytes_per_block


def vllm_memory(facts: ModelFacts, spec: ModelSpec, machine: MachineProfile) -> MemoryEstimate:
    """Weights, KV pool, runtime overhead and first-request spike of one vLLM model,
    with the flags (or, on the CPU build, the environment) that size its KV cache."""
    if (
        facts.model_type == "qwen2"
        and facts.count(LayerKind.SLIDING)
        and facts.count(LayerKind.FULL)
    ):
        # vllm/model_executor/models/qwen2.py asserts max_window_layers == num_layers.
        raise EngineError(
            f"models.{spec.name}: vLLM serves a Qwen2 model with a sliding window on all "
            "layers or none, not from max_window_layers on; set use_sliding_window: false "
            "in its config.json, or serve it with llama.cpp"
        )
    cpu = machine.device == "cpu"
    block = _block_size(machine, facts)
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
    if not vllm_groups(facts)[1]:
        # Only reachable when the config proves it: an encoder, or no cache layers.
        notes.append("no attention KV cache (encoder-only model: its config says so)")
        pool = 0
    elif kv.num_blocks == 0:
        raise EngineError(
            f"models.{spec.name}: a KV pool of {pool} bytes holds not one "
            f"{kv.bytes_per_block}-byte vLLM block; raise kv_cache_gib"
        )
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
    estimate = MemoryEstimate(
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
    launched = per_rank(estimate, spec.world_size).engine_args
    if "--gpu-memory-utilization" in launched and machine.unified:
        utilization = float(launched[launched.index("--gpu-memory-utilization") + 1])
        if utilization > 0.9:
            each = " per rank" if spec.world_size > 1 else ""
            notes.append(
                f"--gpu-memory-utilization {utilization:.2f}{each} on unified memory leaves "
                "the OS little room (seed 002, wall 1)"
            )
    return estimate


def per_rank(planned: MemoryEstimate, ranks: int) -> MemoryEstimate:
    """vLLM reads --kv-cache-memory-bytes and --gpu-memory-utilization per GPU: with
    several ranks each holds 1/ranks of the weights and KV (plus its own runtime).
    The one place these are divided: the launch and ``sparkstack plan`` both call it."""
    if ranks == 1:
        return planned
    args = list(planned.engine_args)
    if "--kv-cache-memory-bytes" in args:
        at = args.index("--kv-cache-memory-bytes") + 1
        args[at] = str(int(args[at]) // ranks)
    if "--gpu-memory-utilization" in args:
        at = args.index("--gpu-memory-utilization") + 1
        shared = (planned.weights_bytes + planned.kv_bytes) / ranks
        whole = float(args[at]) / max(planned.total_bytes, 1)  # utilization per byte
        args[at] = f"{math.ceil((shared + planned.overhead_bytes) * whole * 100) / 100:.2f}"
    return replace(planned, engine_args=args)


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
