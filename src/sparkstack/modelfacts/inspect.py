"""``inspect_source``: model facts from a local HF folder, a GGUF file, a HF repo
id (local HF cache, the built-in catalog, then the hub), or ``pkg:`` paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts import catalog as model_catalog
from sparkstack.modelfacts.facts import LayerKind, LayerSpec, ModelFacts
from sparkstack.modelfacts.gguf_reader import GGUFFile, read_gguf
from sparkstack.modelfacts.hf_config import (
    ConfigView,
    dtype_of,
    estimate_params,
    experts_of,
    is_encoder_only,
    layers_of,
    max_context,
    text_config,
)
from sparkstack.modelfacts.hub import cached_snapshot, fetch_remote
from sparkstack.modelfacts.quant_formats import BITS_PER_WEIGHT
from sparkstack.modelfacts.safetensors_headers import TensorInfo, read_local_headers, summarize
from sparkstack.stack.sources import resolve_model_source


def inspect_source(source: str, *, offline: bool = False) -> ModelFacts:
    resolved = resolve_model_source(source)
    path = Path(resolved).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise SparkstackError(f"{source}: a model file must be .gguf; for HF give the folder")
        return facts_from_gguf(source, read_gguf(path))
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.exists():
            raise SparkstackError(f"{source}: the folder has no config.json (and no .gguf given)")
        return facts_from_hf(source, _load_json(config_path), read_local_headers(path))
    if _is_path(source):
        raise SparkstackError(
            f"{path}: no such file or folder; give an existing .gguf file, a folder with "
            "config.json, or a HF repo id (ORG/NAME)"
        )
    snapshot = cached_snapshot(source)
    if snapshot is not None:
        return facts_from_hf(
            source, _load_json(snapshot / "config.json"), read_local_headers(snapshot)
        )
    entry = model_catalog.find(source)
    if entry is not None:
        return facts_from_catalog(entry)
    if offline:
        raise SparkstackError(
            f"{source}: not in the local HF cache nor in sparkstack's catalog, and offline; "
            "download it (`hf download {source}`) or plan without --offline"
        )
    config, tensors = fetch_remote(source)
    return facts_from_hf(source, config, tensors)


def _is_path(source: str) -> bool:
    """A source that cannot be a HF repo id (ORG/NAME) is a local path."""
    return (
        source.count("/") != 1
        or source.startswith(("/", ".", "~"))
        or source.endswith((".gguf", ".json", ".safetensors"))
    )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SparkstackError(f"{path}: unreadable config.json: {exc}") from exc
    if not isinstance(data, dict):
        raise SparkstackError(f"{path}: config.json is not a JSON object")
    return data


def _quantization(config: dict[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method", ""))
    algo = quant.get("quant_algo")
    return f"{method}:{algo}" if algo else method or None


def _base_facts(source: str, config: dict[str, Any]) -> ModelFacts:
    text = text_config(config)
    dtype, dtype_bytes = dtype_of(text if ("torch_dtype" in text or "dtype" in text) else config)
    experts, per_token = experts_of(text)
    view = ConfigView(text)
    archs = config.get("architectures") or [text.get("model_type", "unknown")]
    return ModelFacts(
        source=source,
        format="hf",
        architecture=str(archs[0]),
        model_type=str(text.get("model_type", config.get("model_type", ""))),
        dtype=dtype,
        dtype_bytes=dtype_bytes,
        quantization=_quantization(config),
        hidden_size=view.integer("hidden_size", default=0),
        vocab_size=view.integer("vocab_size", default=0),
        num_attention_heads=view.integer("num_attention_heads", default=0),
        layers=layers_of(text),
        max_context=max_context(text),
        tie_word_embeddings=bool(
            text.get("tie_word_embeddings", config.get("tie_word_embeddings"))
        ),
        is_moe=experts > 0,
        experts=experts,
        experts_per_token=per_token,
        encoder_only=is_encoder_only(text),
    )


def facts_from_hf(source: str, config: dict[str, Any], tensors: list[TensorInfo]) -> ModelFacts:
    facts = _base_facts(source, config)
    if tensors:
        summary = summarize(tensors)
        facts.total_params = summary.total_params
        inactive = (
            summary.expert_params * (1 - facts.experts_per_token / facts.experts)
            if facts.experts
            else 0
        )
        facts.active_params = int(summary.total_params - inactive)
        facts.weight_bytes_by_format = summary.bytes_by_format
        facts.params_source = "safetensors headers"
    else:
        estimate = estimate_params(text_config(config))
        if estimate:
            facts.total_params, facts.active_params = estimate
            bits = BITS_PER_WEIGHT.get(
                facts.dtype.upper().replace("BFLOAT16", "BF16").replace("FLOAT16", "F16"), 16
            )
            facts.weight_bytes_by_format = {facts.dtype: int(facts.total_params * bits / 8)}
            facts.params_source = "estimated from config.json (no safetensors headers)"
    facts.weight_bytes = sum(facts.weight_bytes_by_format.values())
    return facts


def facts_from_catalog(entry: model_catalog.CatalogEntry) -> ModelFacts:
    facts = _base_facts(entry.id, entry.config)
    facts.total_params, facts.active_params = entry.total_params, entry.active_params
    facts.weight_bytes_by_format = entry.bytes_by_format()
    facts.weight_bytes = sum(facts.weight_bytes_by_format.values())
    facts.params_source = f"sparkstack catalog: {entry.source}"
    facts.notes = list(entry.warnings)
    return facts


_LLAMACPP_SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma3n": (5, False), "gpt-oss": (2, False),
    "cohere2": (4, False), "exaone4": (4, False), "olmo2": (4, False), "afmoe": (4, False),
}  # fmt: skip
"""llama.cpp's default sliding pattern per architecture (src/models/*.cpp
``load_swa_pattern``): (n, dense_first); the GGUF's own ``sliding_window_pattern``
wins. Architectures not listed (phi3 among them) run without a window in llama.cpp."""


def _gguf_swa(gguf: GGUFFile, arch: str, n_layers: int) -> list[bool]:
    window = gguf.get_int(f"{arch}.attention.sliding_window")
    if not window or arch not in _LLAMACPP_SWA_PATTERNS:
        return [False] * n_layers
    given = gguf.metadata.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(given, list):
        return [bool(flag) for flag in given][:n_layers]
    n, dense_first = _LLAMACPP_SWA_PATTERNS[arch]
    if isinstance(given, int):
        n = given
    if dense_first:
        return [n == 0 or i % n != 0 for i in range(n_layers)]
    return [n == 0 or i % n < n - 1 for i in range(n_layers)]


def _gguf_layers(gguf: GGUFFile, arch: str) -> list[LayerSpec]:
    meta = gguf.metadata
    n_layers = gguf.get_int(f"{arch}.block_count")
    heads = gguf.get_int(f"{arch}.attention.head_count")
    kv_raw = meta.get(f"{arch}.attention.head_count_kv", heads)
    embd = gguf.get_int(f"{arch}.embedding_length")
    key_len = gguf.get_int(f"{arch}.attention.key_length", embd // heads if heads else 0)
    value_len = gguf.get_int(f"{arch}.attention.value_length", key_len)
    window = gguf.get_int(f"{arch}.attention.sliding_window")
    swa = _gguf_swa(gguf, arch, n_layers)
    layers = []
    for index in range(n_layers):
        kv = kv_raw[index] if isinstance(kv_raw, list) else int(kv_raw)  # type: ignore[call-overload]
        sliding = swa[index]
        # llama.cpp's convention: a layer with 0 KV heads is a recurrent (state) layer.
        kind = LayerKind.SLIDING if sliding else (LayerKind.FULL if kv else LayerKind.STATE)
        layers.append(
            LayerSpec(
                kind=kind,
                kv_heads=int(kv),
                head_dim_k=key_len,
                head_dim_v=value_len,
                window=window if sliding else None,
            )
        )
    return layers


def facts_from_gguf(source: str, gguf: GGUFFile) -> ModelFacts:
    arch = str(gguf.metadata.get("general.architecture", "unknown"))
    by_type: dict[str, int] = {}
    total = experts_total = 0
    for tensor in gguf.tensors:
        by_type[tensor.type_name] = by_type.get(tensor.type_name, 0) + tensor.nbytes
        total += tensor.elements
        if "_exps" in tensor.name:
            experts_total += tensor.elements
    experts = gguf.get_int(f"{arch}.expert_count")
    per_token = gguf.get_int(f"{arch}.expert_used_count")
    active = total - int(experts_total * (1 - per_token / experts)) if experts else total
    names = {t.name for t in gguf.tensors}
    return ModelFacts(
        source=source,
        format="gguf",
        architecture=arch,
        model_type=arch,
        dtype="float16",
        quantization=_gguf_file_type(by_type),
        hidden_size=gguf.get_int(f"{arch}.embedding_length"),
        vocab_size=gguf.get_int(f"{arch}.vocab_size"),
        num_attention_heads=gguf.get_int(f"{arch}.attention.head_count"),
        layers=_gguf_layers(gguf, arch),
        total_params=total,
        active_params=active,
        weight_bytes=sum(by_type.values()),
        weight_bytes_by_format=by_type,
        params_source="GGUF tensor infos",
        max_context=gguf.get_int(f"{arch}.context_length"),
        tie_word_embeddings="output.weight" not in names,
        is_moe=experts > 0,
        experts=experts,
        experts_per_token=per_token,
    )


def _gguf_file_type(by_type: dict[str, int]) -> str:
    """The dominant quantized type by bytes (F32 norms aside)."""
    quantized = {k: v for k, v in by_type.items() if k not in {"F32"}}
    return max(quantized, key=lambda k: quantized[k]) if quantized else "F32"
