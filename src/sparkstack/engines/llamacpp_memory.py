"""llama.cpp's memory model: KV cells padded to 256 and shared by all slots, the
sliding-window cache, F32 recurrent state, and the compute buffers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparkstack.engines.base import MemoryEstimate
from sparkstack.machine import MachineProfile
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.kv_layout import kv_bytes_per_token
from sparkstack.modelfacts.quant_formats import ggml_bytes
from sparkstack.stack.schema import ModelSpec

DEFAULT_CONTEXT = 4096
N_UBATCH = 512
RUNTIME_BYTES = 64 * 2**20
LLAMACPP_PAD = 256
"""llama.cpp pads the context (KV cells) to 256 (src/llama-context.cpp)."""
_GGML_TYPE_IDS = {"f16": 1, "q8_0": 8}


def compute_buffer_bytes(facts: ModelFacts, n_seq: int) -> int:
    """Estimated ggml compute + output buffers: the logits of one ubatch dominate
    (SmolLM2-135M: 512 x (49152 + 4 x 576) x 4 B = 100.5 MiB; llama.cpp logged 99.38),
    plus the output buffer (vocab x 4 B per sequence: 0.19 MiB logged)."""
    return N_UBATCH * (facts.vocab_size + 4 * facts.hidden_size) * 4 + facts.vocab_size * 4 * n_seq


@dataclass(frozen=True)
class LlamaCppKv:
    cells: int
    swa_cells: int
    kv_bytes: int
    state_bytes: int


def llamacpp_kv(
    facts: ModelFacts,
    n_ctx: int,
    n_seq: int = 1,
    type_k: str = "f16",
    type_v: str = "f16",
    n_ubatch: int = 512,
    swa_full: bool = False,
) -> LlamaCppKv:
    """llama.cpp's KV buffer (src/llama-kv-cache.cpp, llama-kv-cache-iswa.cpp).

    Cells = ``n_ctx`` padded to 256, shared by all sequences (``-np`` does not
    multiply it). Bytes = cells * per layer ``n_embd_k_gqa * bytes(type_k) +
    n_embd_v_gqa * bytes(type_v)``, with n_embd_k_gqa = head_dim_k * kv_heads and
    the ggml row size of the cache type (f16: 2 B; q8_0: 34/32 B). The SWA cache
    has ``pad256(min(n_ctx, window * n_seq + n_ubatch))`` cells. Recurrent state
    (RS buffer) is F32: (conv + ssm) elements * 4 bytes per sequence.
    """
    cells = math.ceil(n_ctx / LLAMACPP_PAD) * LLAMACPP_PAD
    window = max((layer.window or 0) for layer in facts.layers) if facts.layers else 0
    swa_cells = cells
    if window and not swa_full:
        swa_cells = min(cells, math.ceil((window * n_seq + n_ubatch) / LLAMACPP_PAD) * LLAMACPP_PAD)
    total = 0.0
    state = 0
    for layer in facts.layers:
        n = swa_cells if layer.kind is LayerKind.SLIDING else cells
        if layer.kind in (LayerKind.FULL, LayerKind.SLIDING):
            total += ggml_bytes(type_k, n * layer.kv_heads * layer.head_dim_k)
            total += ggml_bytes(type_v, n * layer.kv_heads * layer.head_dim_v)
        elif layer.kind is LayerKind.MLA:
            total += ggml_bytes(type_k, n * layer.head_dim_k)
        elif layer.kind is LayerKind.STATE:
            state += (layer.conv_state_elements + layer.ssm_state_elements) * 4 * n_seq
    return LlamaCppKv(
        cells=cells, swa_cells=swa_cells if window else 0, kv_bytes=int(total), state_bytes=state
    )


def llamacpp_memory(facts: ModelFacts, spec: ModelSpec, machine: MachineProfile) -> MemoryEstimate:
    """Weights, KV buffer (cells shared by all slots), compute buffers and the
    ``--n_ctx``/cache-type flags of one llama.cpp model."""
    n_seq = spec.concurrency or 1
    n_ctx = (spec.context or DEFAULT_CONTEXT) * n_seq  # cells are shared by all slots
    cache_type = "q8_0" if spec.kv_cache_dtype == "fp8" else "f16"
    # llama-cpp-python's server cannot set swa_full, so llama.cpp's default holds:
    # a full-size cache for sliding layers too (measured: benchmarks/planner_vs_llamacpp.py).
    kv = llamacpp_kv(facts, n_ctx, n_seq, cache_type, cache_type, N_UBATCH, swa_full=True)
    args = ["--n_ctx", str(n_ctx)]
    if cache_type != "f16":
        type_id = str(_GGML_TYPE_IDS[cache_type])
        args += ["--type_k", type_id, "--type_v", type_id, "--flash_attn", "True"]
    if machine.device == "cuda":
        args += ["--n_gpu_layers", "-1"]
    notes = []
    if spec.kv_cache_dtype == "fp8":
        notes.append("llama.cpp has no fp8 KV cache; q8_0 is used (8.5 bits per value)")
    return MemoryEstimate(
        weights_bytes=facts.weight_bytes,
        kv_bytes_per_token=kv_bytes_per_token(facts, 2),
        kv_bytes=kv.kv_bytes + kv.state_bytes,
        kv_tokens=kv.cells,
        overhead_bytes=compute_buffer_bytes(facts, n_seq) + RUNTIME_BYTES,
        spike_bytes=0,
        engine_args=args,
        notes=notes,
    )
