"""KV-cache size formulas, per attention kind and per engine.

Each function derives what the engine itself computes, so that the plan's
``kv_tokens`` is the number the engine reports at start.

Per token and layer, attention stores K and V for every KV head::

    full / sliding:  kv_heads * (head_dim_k + head_dim_v) * dtype_bytes
    MLA:             1 * (kv_lora_rank + qk_rope_head_dim) * dtype_bytes   (one latent, no V)

State layers (Mamba2 / GatedDeltaNet) hold a fixed state per sequence instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparkstack.modelfacts.facts import LayerKind, LayerSpec, ModelFacts
from sparkstack.modelfacts.quant_formats import ggml_bytes

VLLM_BLOCK_SIZE = 16
"""vLLM CacheConfig.DEFAULT_BLOCK_SIZE."""
LLAMACPP_PAD = 256
"""llama.cpp pads the context (KV cells) to 256 (src/llama-context.cpp)."""

KV_DTYPE_BYTES = {
    "auto": None,
    "bf16": 2,
    "fp16": 2,
    "float16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


def layer_bytes_per_token(layer: LayerSpec, dtype_bytes: float) -> float:
    """KV bytes one token occupies in one attention layer (0 for state/none layers).

    vLLM ``AttentionSpec.page_size_bytes / block_size`` (v1/kv_cache_interface.py):
    ``num_kv_heads * (head_size + head_size_v) * dtype_size``; for MLA
    (``MLAAttentionSpec``) head_size is kv_lora_rank + qk_rope_head_dim with one
    "head" and no separate V.
    """
    if layer.kind in (LayerKind.FULL, LayerKind.SLIDING):
        return layer.kv_heads * (layer.head_dim_k + layer.head_dim_v) * dtype_bytes
    if layer.kind is LayerKind.MLA:
        return layer.head_dim_k * dtype_bytes
    return 0.0


def kv_bytes_per_token(facts: ModelFacts, dtype_bytes: float) -> int:
    """KV bytes per token of context over every full-attention and MLA layer.

    Sliding-window layers are left out: they hold at most a window per sequence,
    not one entry per token of context (see ``vllm_blocks_per_request``).
    """
    return int(
        sum(
            layer_bytes_per_token(layer, dtype_bytes)
            for layer in facts.layers
            if layer.kind in (LayerKind.FULL, LayerKind.MLA)
        )
    )


def state_bytes_per_sequence(layer: LayerSpec, conv_bytes: int, ssm_bytes: int) -> int:
    """Bytes of one Mamba2/GDN layer's state for one sequence (conv + recurrent)."""
    ssm = layer.ssm_state_dtype_bytes or ssm_bytes
    return layer.conv_state_elements * conv_bytes + layer.ssm_state_elements * ssm


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
    * state group: 1 block (``MambaSpec``, mamba_cache_mode none).

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
            per_request += count
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
