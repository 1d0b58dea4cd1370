"""From a Hugging Face ``config.json`` to layer kinds, dimensions and (for
standard attention + MLP/MoE architectures) an estimate of the parameter count.

Fields are read under their canonical names or under any alias transformers
itself accepts for that model type (``config_aliases``: each config class's
``attribute_map``, e.g. GPT-2's ``n_embd``/``n_head``/``n_layer``/``n_positions``),
then under the aliases common to custom-code configs. Per-architecture rules
exist only where the attention layout really differs, following vLLM's model
code (vllm/model_executor/models/*.py) and transformers' own defaults:

* ``layer_types`` lists (gpt-oss, Gemma 2/3, Qwen2/3, Qwen3-Next, Granite hybrids),
  or, in older configs without it, the rule transformers derives it by
  (Gemma 2: every other layer sliding; Gemma 3: ``sliding_window_pattern``;
  Qwen2-family: ``use_sliding_window`` from ``max_window_layers`` on; any
  other ``sliding_window``: every layer, as vLLM applies it);
* MLA (``kv_lora_rank``): one latent of ``kv_lora_rank + qk_rope_head_dim``;
* Falcon / GPT-BigCode ``multi_query``: one KV head;
* Mamba2 / GatedDeltaNet state layers (``hybrid_override_pattern``,
  ``layers_block_type``, ``attn_layer_indices``, ``full_attention_interval``);
* cross-layer KV sharing (``num_kv_shared_layers``): the sharing layers hold none.

A config that lacks a field the layout needs, or whose fields contradict each
other, raises ``ConfigError`` naming the fields and the model type: the
planner never plans a zero or a guess.
"""

from __future__ import annotations

from typing import Any

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.config_aliases import ALIASES
from sparkstack.modelfacts.facts import LayerKind, LayerSpec
from sparkstack.modelfacts.quant_formats import TORCH_DTYPE_BYTES

Config = dict[str, Any]
_ENCODERS = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "nomic_bert"}
_PURE_SSM = {"mamba", "mamba2", "falcon_mamba"}
_GENERIC_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("n_embd", "d_model", "dim", "model_dim"),
    "num_attention_heads": ("n_head", "n_heads", "num_heads"),
    "num_hidden_layers": ("n_layer", "n_layers", "num_layers"),
    "num_key_value_heads": (
        "num_kv_heads", "n_head_kv", "n_kv_heads", "multi_query_group_num",
        "num_attention_groups",
    ),
    "max_position_embeddings": ("n_positions", "seq_length", "max_seq_len", "max_sequence_length"),
    "num_local_experts": ("num_experts", "n_routed_experts", "moe_num_experts"),
    "num_experts_per_tok": ("experts_per_token", "moe_topk", "num_experts_per_token"),
    "layer_types": ("layers_block_type",),
}  # fmt: skip
_MAMBA_ALIASES: dict[str, tuple[str, ...]] = {
    "mamba_num_heads": ("mamba_n_heads",),
    "mamba_head_dim": ("mamba_d_head",),
    "ssm_state_size": ("mamba_d_state", "state_size"),
    "n_groups": ("mamba_n_groups",),
    "conv_kernel": ("mamba_d_conv",),
}
_ATTENTION_TYPES = {"full_attention", "attention", "global", "full", "hybrid"}
_SLIDING_TYPES = {"sliding_attention", "sliding", "local"}
_STATE_TYPES = {"linear_attention", "mamba", "mamba2"}


class ConfigError(SparkstackError):
    """A config.json the planner cannot read completely, or that contradicts itself."""


def _missing(model_type: str, fields: list[str]) -> ConfigError:
    return ConfigError(
        f"config.json (model_type {model_type or 'unknown'!r}) lacks "
        f"{', '.join(fields)}: the planner cannot size this model's cache without "
        "it; add the field(s) to config.json (or report the architecture)"
    )


def _contradiction(model_type: str, text: str) -> ConfigError:
    return ConfigError(
        f"config.json (model_type {model_type or 'unknown'!r}): {text}; fix config.json"
    )


class ConfigView:
    """A config read under canonical field names, through transformers' aliases."""

    def __init__(self, config: Config) -> None:
        self.raw = config
        self.model_type = str(config.get("model_type", ""))
        by_canonical: dict[str, list[str]] = {}
        for alias, canonical in ALIASES.get(self.model_type, {}).items():
            by_canonical.setdefault(canonical, []).append(alias)
        for table in (_GENERIC_ALIASES, _MAMBA_ALIASES):
            for canonical, aliases in table.items():
                by_canonical.setdefault(canonical, []).extend(aliases)
        self._aliases = by_canonical

    def names(self, field: str) -> list[str]:
        return [field, *self._aliases.get(field, [])]

    def get(self, field: str) -> Any:
        for name in self.names(field):
            value = self.raw.get(name)
            if value is not None:
                return value
        return None

    def has(self, field: str) -> bool:
        return self.get(field) is not None

    def integer(self, field: str, default: int | None = None) -> int:
        """An integer field; a missing one is ``default``, or a ``ConfigError``."""
        value = self.get(field)
        if value is None:
            if default is None:
                raise _missing(self.model_type, [" or ".join(self.names(field))])
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise _contradiction(self.model_type, f"{field} is {value!r}, not an integer")
        if value < 0:
            raise _contradiction(self.model_type, f"{field} is {value}, below 0")
        return value

    def require(self, *fields: str) -> None:
        missing = [" or ".join(self.names(f)) for f in fields if not self.has(f)]
        if missing:
            raise _missing(self.model_type, missing)


def text_config(config: Config) -> Config:
    """The language model's part of a (possibly multimodal) config."""
    inner = config.get("text_config")
    if isinstance(inner, dict):
        return {**inner, "quantization_config": config.get("quantization_config")}
    return config


def dtype_of(config: Config) -> tuple[str, int]:
    name = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return name, TORCH_DTYPE_BYTES.get(name, 2)


def is_encoder_only(config: Config) -> bool:
    model_type = str(config.get("model_type", ""))
    archs = [str(a) for a in config.get("architectures") or []]
    return model_type in _ENCODERS and not any("CausalLM" in a for a in archs)


def head_dim(config: Config) -> int:
    view = ConfigView(config)
    return _head_dim(view, view.integer("num_attention_heads"))


def _head_dim(view: ConfigView, heads: int) -> int:
    explicit = view.get("head_dim")
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    hidden = view.integer("hidden_size")
    if heads == 0 or hidden % heads:
        raise _contradiction(
            view.model_type,
            f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} "
            "and there is no head_dim",
        )
    return hidden // heads


def _kv_heads(view: ConfigView, heads: int) -> int:
    new_falcon = bool(view.raw.get("new_decoder_architecture"))
    if view.raw.get("multi_query") and not new_falcon:
        return 1
    kv = view.integer("num_key_value_heads", default=heads)
    if kv == 0 or kv > heads or heads % kv:
        raise _contradiction(
            view.model_type,
            f"num_key_value_heads {kv} does not divide num_attention_heads {heads}",
        )
    return kv


def _attention_layer(view: ConfigView, kind: LayerKind) -> LayerSpec:
    if view.get("kv_lora_rank"):
        view.require("qk_rope_head_dim")
        latent = view.integer("kv_lora_rank") + view.integer("qk_rope_head_dim")
        return LayerSpec(kind=LayerKind.MLA, kv_heads=1, head_dim_k=latent, head_dim_v=0)
    heads = view.integer("num_attention_heads")
    dim = _head_dim(view, heads)
    window = None
    if kind is LayerKind.SLIDING:
        window = view.integer("sliding_window")
        if window == 0:
            raise _contradiction(view.model_type, "sliding layers with sliding_window 0")
    return LayerSpec(
        kind=kind, kv_heads=_kv_heads(view, heads), head_dim_k=dim, head_dim_v=dim, window=window
    )


def _gated_delta_net_layer(view: ConfigView) -> LayerSpec:
    """GDN state per sequence (vLLM mamba_utils.gated_delta_net_state_shape, TP=1)."""
    view.require(
        "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
        "linear_value_head_dim",
    )  # fmt: skip
    k_heads, v_heads = view.integer("linear_num_key_heads"), view.integer("linear_num_value_heads")
    k_dim, v_dim = view.integer("linear_key_head_dim"), view.integer("linear_value_head_dim")
    conv_dim = k_dim * k_heads * 2 + v_dim * v_heads
    kernel = view.integer("linear_conv_kernel_dim", default=4)
    ssm_bytes = 4 if str(view.raw.get("mamba_ssm_dtype", "")) == "float32" else None
    return LayerSpec(
        kind=LayerKind.STATE,
        conv_state_elements=(kernel - 1) * conv_dim,
        ssm_state_elements=v_heads * v_dim * k_dim,
        ssm_state_dtype_bytes=ssm_bytes,
    )


def _mamba2_layer(view: ConfigView) -> LayerSpec:
    """Mamba2 state per sequence (vLLM mamba_utils.mamba2_state_shape, TP=1)."""
    view.require("mamba_num_heads", "mamba_head_dim", "ssm_state_size")
    heads, dim = view.integer("mamba_num_heads"), view.integer("mamba_head_dim")
    groups, state = view.integer("n_groups", default=1), view.integer("ssm_state_size")
    conv_dim = heads * dim + 2 * groups * state
    kernel = view.integer("conv_kernel", default=4)
    # vLLM's NemotronH config defaults the SSM cache to float16 when the key is absent;
    # the other Mamba2 hybrids keep it in the model's dtype.
    default = "float16" if view.model_type == "nemotron_h" else None
    ssm_dtype = view.raw.get("mamba_ssm_cache_dtype", default)
    return LayerSpec(
        kind=LayerKind.STATE,
        conv_state_elements=(kernel - 1) * conv_dim,
        ssm_state_elements=heads * dim * state,
        ssm_state_dtype_bytes=TORCH_DTYPE_BYTES.get(str(ssm_dtype)) if ssm_dtype else None,
        checkpoint_blocks=1,
    )


def _derived_layer_types(view: ConfigView, n_layers: int) -> list[str] | None:
    """The ``layer_types`` transformers derives for configs saved without it."""
    mt = view.model_type
    window = view.get("sliding_window")
    pattern_string = view.raw.get("hybrid_override_pattern")
    if isinstance(pattern_string, str):
        by_char = {"M": "mamba", "*": "full_attention"}
        return [by_char.get(char, "none") for char in pattern_string]
    if isinstance(view.raw.get("attn_layer_indices"), list):
        indices = set(view.raw["attn_layer_indices"])
        return ["full_attention" if i in indices else "mamba" for i in range(n_layers)]
    if view.raw.get("full_attention_interval"):
        interval = view.integer("full_attention_interval")
        return [
            "full_attention" if (i + 1) % interval == 0 else "linear_attention"
            for i in range(n_layers)
        ]
    if not window:
        return None
    if mt == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    if mt in ("gemma3", "gemma3_text", "cohere2"):
        every = view.integer("sliding_window_pattern", default=6 if mt != "cohere2" else 4)
        return [
            "full_attention" if (i + 1) % every == 0 else "sliding_attention"
            for i in range(n_layers)
        ]
    if "use_sliding_window" in view.raw:
        # Qwen2 family: the window applies from layer max_window_layers on (28 when
        # the key is absent, transformers' default), and not at all when disabled.
        if not view.raw["use_sliding_window"]:
            return None
        first = view.integer("max_window_layers", default=28)
        return ["sliding_attention" if i >= first else "full_attention" for i in range(n_layers)]
    # No layer list: a set sliding_window applies to every layer (vLLM puts it in
    # CacheConfig.sliding_window, which every attention layer then uses).
    return ["sliding_attention"] * n_layers


def _layer(view: ConfigView, name: str) -> LayerSpec:
    if name in _ATTENTION_TYPES:
        return _attention_layer(view, LayerKind.FULL)
    if name in _SLIDING_TYPES:
        return _attention_layer(view, LayerKind.SLIDING)
    if name == "linear_attention" and (
        view.has("linear_num_value_heads") or not view.has("mamba_num_heads")
    ):
        # transformers 5 also names Mamba2 layers linear_attention (Granite
        # hybrids, Nemotron-H): the fields tell GatedDeltaNet from Mamba2.
        return _gated_delta_net_layer(view)
    if name in _STATE_TYPES:
        return _mamba2_layer(view)
    if name in ("none", "mlp", "moe"):
        return LayerSpec(kind=LayerKind.NONE)
    raise _contradiction(
        view.model_type, f"layer_types has {name!r}, a layer kind the planner does not know"
    )


def layers_of(config: Config) -> list[LayerSpec]:
    view = ConfigView(config)
    if is_encoder_only(config):
        return [LayerSpec(kind=LayerKind.NONE) for _ in range(view.integer("num_hidden_layers"))]
    if view.model_type in _PURE_SSM:
        raise ConfigError(
            f"model_type {view.model_type!r} is a pure state-space model; the planner "
            "has no memory model for it yet"
        )
    types = view.get("layer_types")
    pattern = view.raw.get("hybrid_override_pattern")
    listed = types if isinstance(types, list) else pattern
    n_layers = view.integer("num_hidden_layers", default=len(listed) if listed else None)
    if not isinstance(types, list):
        types = _derived_layer_types(view, n_layers)
    if types is None:
        types = ["full_attention"] * n_layers
    if len(types) != n_layers:
        field = "hybrid_override_pattern" if isinstance(pattern, str) else "layer_types"
        raise _contradiction(
            view.model_type,
            f"{field} names {len(types)} layers but num_hidden_layers is {n_layers}",
        )
    layers = [_layer(view, str(name)) for name in types]
    shared = view.integer("num_kv_shared_layers", default=0)
    if shared:
        # The last ``shared`` layers reuse earlier layers' K/V (Gemma 3n): no cache.
        layers[-shared:] = [LayerSpec(kind=LayerKind.NONE)] * shared
    return layers


def max_context(config: Config) -> int:
    """The model's context length (0 when the config does not say)."""
    value = ConfigView(config).get("max_position_embeddings")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def experts_of(config: Config) -> tuple[int, int]:
    view = ConfigView(config)
    return view.integer("num_local_experts", default=0), view.integer(
        "num_experts_per_tok", default=0
    )


def estimate_params(config: Config) -> tuple[int, int] | None:
    """(total, active) parameters of a standard attention + MLP/MoE decoder, or None
    for architectures this estimate does not cover (hybrids)."""
    view = ConfigView(config)
    if config.get("hybrid_override_pattern") or config.get("full_attention_interval"):
        return None
    if any(t in _STATE_TYPES for t in view.get("layer_types") or []):
        return None
    hidden = view.integer("hidden_size", default=0)
    vocab = view.integer("vocab_size", default=0)
    n_layers = view.integer("num_hidden_layers", default=0)
    heads = view.integer("num_attention_heads", default=0)
    if not (hidden and vocab and n_layers and heads):
        return None
    dim = _head_dim(view, heads)
    kv = _kv_heads(view, heads)
    if view.get("kv_lora_rank"):
        rope, nope = view.integer("qk_rope_head_dim", 0), view.integer("qk_nope_head_dim", 0)
        v_dim, q_rank = view.integer("v_head_dim", 0), view.integer("q_lora_rank", 0)
        kv_rank = view.integer("kv_lora_rank")
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
    inter = view.integer("intermediate_size", default=0)
    dense_mlp = 3 * hidden * inter
    total = active = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    dense_layers = view.integer("first_k_dense_replace", default=0) if experts else n_layers
    moe_inter = view.integer("moe_intermediate_size", default=inter)
    for index in range(n_layers):
        total += attention
        active += attention
        if not experts or index < dense_layers:
            total += dense_mlp
            active += dense_mlp
            continue
        expert = 3 * hidden * moe_inter
        shared = view.integer("n_shared_experts", default=0) * 3 * hidden * moe_inter + (
            3 * hidden * view.integer("shared_expert_intermediate_size", default=0)
        )
        router = hidden * experts
        total += experts * expert + shared + router
        active += per_token * expert + shared + router
    return total, active
