"""KV bytes per token and state bytes per sequence, per attention kind: the
engine-neutral formulas every engine's memory model builds on.

Per token and layer, attention stores K and V for every KV head::

    full / sliding:  kv_heads * (head_dim_k + head_dim_v) * dtype_bytes
    MLA:             1 * (kv_lora_rank + qk_rope_head_dim) * dtype_bytes   (one latent, no V)

State layers (Mamba2 / GatedDeltaNet) hold a fixed state per sequence instead.
"""

from __future__ import annotations

from sparkstack.modelfacts.facts import LayerKind, LayerSpec, ModelFacts


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
