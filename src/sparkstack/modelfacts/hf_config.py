"""From a Hugging Face ``config.json`` to layer kinds, dimensions and (for
standard attention + MLP/MoE architectures) an estimate of the parameter count.

Which config keys mean what follows vLLM's model configs (vllm/config/model.py,
vllm/model_executor/models/*.py): ``layer_types`` (gpt-oss, Qwen3-Next/3.5),
``hybrid_override_pattern`` (Nemotron-H: M = Mamba2, * = attention, E/- = MoE/MLP
only), ``kv_lora_rank`` (DeepSeek MLA), ``text_config`` for multimodal wrappers.
"""

from __future__ import annotations

from typing import Any

from sparkstack.modelfacts.facts import LayerKind, LayerSpec
from sparkstack.modelfacts.quant_formats import TORCH_DTYPE_BYTES

Config = dict[str, Any]
_ENCODERS = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "nomic_bert"}


def text_config(config: Config) -> Config:
    """The language model's part of a (possibly multimodal) config."""
    inner = config.get("text_config")
    if isinstance(inner, dict):
        return {**inner, "quantization_config": config.get("quantization_config")}
    return config


def _int(config: Config, *keys: str, default: int = 0) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def dtype_of(config: Config) -> tuple[str, int]:
    name = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return name, TORCH_DTYPE_BYTES.get(name, 2)


def is_encoder_only(config: Config) -> bool:
    model_type = str(config.get("model_type", ""))
    archs = [str(a) for a in config.get("architectures") or []]
    return model_type in _ENCODERS and not any("CausalLM" in a for a in archs)


def head_dim(config: Config) -> int:
    heads = _int(config, "num_attention_heads", "n_head")
    hidden = _int(config, "hidden_size", "d_model")
    return _int(config, "head_dim", default=hidden // heads if heads else 0)


def _attention_layer(config: Config, kind: LayerKind) -> LayerSpec:
    if config.get("kv_lora_rank"):
        latent = int(config["kv_lora_rank"]) + _int(config, "qk_rope_head_dim")
        return LayerSpec(kind=LayerKind.MLA, kv_heads=1, head_dim_k=latent, head_dim_v=0)
    kv_heads = _int(config, "num_key_value_heads", "num_attention_heads")
    dim = head_dim(config)
    window = _int(config, "sliding_window") if kind is LayerKind.SLIDING else None
    return LayerSpec(kind=kind, kv_heads=kv_heads, head_dim_k=dim, head_dim_v=dim, window=window)


def _gated_delta_net_layer(config: Config) -> LayerSpec:
    """GDN state per sequence (vLLM mamba_utils.gated_delta_net_state_shape, TP=1)."""
    k_heads, v_heads = _int(config, "linear_num_key_heads"), _int(config, "linear_num_value_heads")
    k_dim, v_dim = _int(config, "linear_key_head_dim"), _int(config, "linear_value_head_dim")
    conv_dim = k_dim * k_heads * 2 + v_dim * v_heads
    kernel = _int(config, "linear_conv_kernel_dim", default=4)
    ssm_bytes = 4 if str(config.get("mamba_ssm_dtype", "")) == "float32" else None
    return LayerSpec(
        kind=LayerKind.STATE,
        conv_state_elements=(kernel - 1) * conv_dim,
        ssm_state_elements=v_heads * v_dim * k_dim,
        ssm_state_dtype_bytes=ssm_bytes,
    )


def _mamba2_layer(config: Config) -> LayerSpec:
    """Mamba2 state per sequence (vLLM mamba_utils.mamba2_state_shape, TP=1)."""
    heads, dim = _int(config, "mamba_num_heads"), _int(config, "mamba_head_dim")
    groups, state = _int(config, "n_groups", default=1), _int(config, "ssm_state_size")
    conv_dim = heads * dim + 2 * groups * state
    kernel = _int(config, "conv_kernel", default=4)
    # vLLM's NemotronH config defaults the SSM cache to float16 when the key is absent.
    ssm_dtype = str(config.get("mamba_ssm_cache_dtype", "float16"))
    return LayerSpec(
        kind=LayerKind.STATE,
        conv_state_elements=(kernel - 1) * conv_dim,
        ssm_state_elements=heads * dim * state,
        ssm_state_dtype_bytes=TORCH_DTYPE_BYTES.get(ssm_dtype, 2),
    )


def layers_of(config: Config) -> list[LayerSpec]:
    n_layers = _int(config, "num_hidden_layers", "n_layer", "num_layers")
    if is_encoder_only(config):
        return [LayerSpec(kind=LayerKind.NONE) for _ in range(n_layers)]
    pattern = config.get("hybrid_override_pattern")
    if isinstance(pattern, str):
        by_char = {"M": _mamba2_layer(config), "*": _attention_layer(config, LayerKind.FULL)}
        return [by_char.get(char, LayerSpec(kind=LayerKind.NONE)) for char in pattern]
    types = config.get("layer_types")
    if not isinstance(types, list) and config.get("full_attention_interval"):
        interval = int(config["full_attention_interval"])
        types = [
            "full_attention" if (i + 1) % interval == 0 else "linear_attention"
            for i in range(n_layers)
        ]
    if isinstance(types, list):
        out: list[LayerSpec] = []
        for name in types:
            if name == "sliding_attention":
                out.append(_attention_layer(config, LayerKind.SLIDING))
            elif name == "linear_attention":
                out.append(_gated_delta_net_layer(config))
            else:
                out.append(_attention_layer(config, LayerKind.FULL))
        return out
    uses_window = config.get("model_type") == "mistral" or config.get("use_sliding_window")
    kind = LayerKind.SLIDING if uses_window and config.get("sliding_window") else LayerKind.FULL
    return [_attention_layer(config, kind) for _ in range(n_layers)]


def experts_of(config: Config) -> tuple[int, int]:
    experts = _int(config, "num_local_experts", "num_experts", "n_routed_experts")
    per_token = _int(config, "num_experts_per_tok", "experts_per_token", "moe_topk")
    return experts, per_token


def estimate_params(config: Config) -> tuple[int, int] | None:
    """(total, active) parameters of a standard attention + MLP/MoE decoder, or None
    for architectures this estimate does not cover (hybrids)."""
    if config.get("hybrid_override_pattern") or config.get("full_attention_interval"):
        return None
    if any(t == "linear_attention" for t in config.get("layer_types") or []):
        return None
    hidden = _int(config, "hidden_size")
    vocab = _int(config, "vocab_size")
    n_layers = _int(config, "num_hidden_layers")
    heads = _int(config, "num_attention_heads")
    if not (hidden and vocab and n_layers and heads):
        return None
    dim = head_dim(config)
    kv = _int(config, "num_key_value_heads", default=heads)
    if config.get("kv_lora_rank"):
        rope, nope = _int(config, "qk_rope_head_dim"), _int(config, "qk_nope_head_dim")
        v_dim, q_rank = _int(config, "v_head_dim"), _int(config, "q_lora_rank")
        kv_rank = int(config["kv_lora_rank"])
        q = (
            hidden * q_rank + q_rank * heads * (nope + rope)
            if q_rank
            else hidden * heads * (nope + rope)
        )
        attention = (
            q
            + hidden * (kv_rank + rope)
            + kv_rank * heads * (nope + v_dim)
            + heads * v_dim * hidden
        )
    else:
        attention = 2 * hidden * heads * dim + 2 * hidden * kv * dim
    experts, per_token = experts_of(config)
    inter = _int(config, "intermediate_size")
    dense_mlp = 3 * hidden * inter
    total = active = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    dense_layers = _int(config, "first_k_dense_replace") if experts else n_layers
    for index in range(n_layers):
        total += attention
        active += attention
        if not experts or index < dense_layers:
            total += dense_mlp
            active += dense_mlp
            continue
        expert = 3 * hidden * _int(config, "moe_intermediate_size", default=inter)
        shared = _int(config, "n_shared_experts") * 3 * hidden * _int(
            config, "moe_intermediate_size", default=inter
        ) + 3 * hidden * _int(config, "shared_expert_intermediate_size")
        router = hidden * experts
        total += experts * expert + shared + router
        active += per_token * expert + shared + router
    return total, active
