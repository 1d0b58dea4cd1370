"""Configs are read through transformers' own field aliases (issue 11): the
GPT-BigCode config of the issue is 5 layers of one KV head with a 4096-token
context, not 0 bytes of KV and max context 0."""

from __future__ import annotations

from sparkstack.modelfacts.facts import LayerKind
from sparkstack.modelfacts.hf_config import ConfigView
from sparkstack.modelfacts.inspect import facts_from_hf
from sparkstack.modelfacts.kv_layout import kv_bytes_per_token

GPT_BIGCODE = {
    "model_type": "gpt_bigcode", "architectures": ["GPTBigCodeForCausalLM"],
    "n_embd": 256, "n_head": 8, "n_layer": 5, "n_positions": 4096, "n_inner": 1024,
    "multi_query": True, "vocab_size": 49152, "torch_dtype": "bfloat16",
}  # fmt: skip


def test_gpt_bigcode_is_read_through_its_aliases() -> None:
    facts = facts_from_hf("tiny", GPT_BIGCODE, [])
    assert facts.layer_summary == {"full": 5}
    assert facts.max_context == 4096 and facts.hidden_size == 256
    assert {(layer.kv_heads, layer.head_dim_k) for layer in facts.layers} == {(1, 32)}
    assert kv_bytes_per_token(facts, 2) == 5 * 1 * (32 + 32) * 2


def test_aliases_come_from_the_model_type() -> None:
    dbrx = ConfigView({"model_type": "dbrx", "d_model": 128, "max_seq_len": 2048})
    assert dbrx.integer("hidden_size") == 128
    assert dbrx.integer("max_position_embeddings") == 2048
    falcon = facts_from_hf(
        "f",
        {"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4,
         "num_hidden_layers": 2, "new_decoder_architecture": True, "num_kv_heads": 2},
        [],
    )  # fmt: skip
    assert [layer.kv_heads for layer in falcon.layers] == [2, 2]


def test_an_encoder_has_no_kv_cache_because_its_config_says_so() -> None:
    bert = {"model_type": "bert", "architectures": ["BertModel"], "num_hidden_layers": 6}
    facts = facts_from_hf("minilm", bert, [])
    assert facts.encoder_only and facts.count(LayerKind.NONE) == 6
