"""The facts the planner needs about one model, whatever format it came in."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class LayerKind(StrEnum):
    FULL = "full"
    """Full (global) attention; GQA/MQA/MHA by ``kv_heads``."""
    SLIDING = "sliding"
    """Sliding-window attention over the last ``window`` tokens."""
    MLA = "mla"
    """Multi-head latent attention: one compressed latent of ``head_dim_k`` per token."""
    STATE = "state"
    """Linear attention / Mamba / GatedDeltaNet: a fixed state per sequence."""
    NONE = "none"
    """No cache at all (an MLP/MoE-only layer, or an encoder)."""


class LayerSpec(BaseModel):
    """One layer's cache-relevant shape. Attention: K/V heads and dims; state: elements."""

    model_config = ConfigDict(frozen=True)

    kind: LayerKind
    kv_heads: int = 0
    head_dim_k: int = 0
    head_dim_v: int = 0
    window: int | None = None
    conv_state_elements: int = 0
    """STATE layers: elements of the convolution state per sequence."""
    ssm_state_elements: int = 0
    """STATE layers: elements of the recurrent (temporal/SSM) state per sequence."""
    ssm_state_dtype_bytes: int | None = None
    """Bytes per SSM-state element when the config pins it (e.g. float32 = 4)."""
    checkpoint_blocks: int = 0
    """STATE layers: extra state blocks an engine keeps per request to checkpoint a
    prefill for prefix caching (vLLM's Mamba2 mixer: 1; GatedDeltaNet: 0)."""


class ModelFacts(BaseModel):
    """What `sparkstack inspect` reports and the planner consumes."""

    source: str
    format: str = Field(description="hf (config.json + safetensors) or gguf")
    architecture: str
    model_type: str = ""
    dtype: str = Field(default="bfloat16", description="Activation / unquantized dtype.")
    dtype_bytes: int = 2
    quantization: str | None = None
    hidden_size: int = 0
    vocab_size: int = 0
    num_attention_heads: int = 0
    layers: list[LayerSpec] = Field(default_factory=list)
    total_params: int = 0
    active_params: int = 0
    weight_bytes: int = 0
    weight_bytes_by_format: dict[str, int] = Field(default_factory=dict)
    params_source: str = Field(
        default="", description="Where the parameter and byte counts come from."
    )
    max_context: int = 0
    tie_word_embeddings: bool = False
    is_moe: bool = False
    experts: int = 0
    experts_per_token: int = 0
    encoder_only: bool = False
    notes: list[str] = Field(default_factory=list)

    def count(self, kind: LayerKind) -> int:
        return sum(1 for layer in self.layers if layer.kind is kind)

    @property
    def layer_summary(self) -> dict[str, int]:
        summary: dict[str, int] = {}
        for layer in self.layers:
            summary[layer.kind.value] = summary.get(layer.kind.value, 0) + 1
        return summary
