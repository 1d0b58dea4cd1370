"""Run with vLLM's own python (not sparkstack's): build tiny random-weight
models from their configs, then construct vLLM's offline engine on each once
per setting and print what the engine reports, one JSON line per model on
stdout (``PROBE-RESULT {...}``).

usage: python vllm_kv_probe.py JOB_JSON

JOB_JSON: {"tokenizer_gguf", "tokenizer_dir", "settings": [{"kv_cache_gib",
"context"}], "models": [{"name", "folder", "config"}]}. The engine core runs in
this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so one import of vLLM serves
every model and setting (the machine is scarce); its ``KV cache size`` line is
the same one the API server logs.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.update(
    HF_HUB_OFFLINE="1",
    VLLM_ENABLE_V1_MULTIPROCESSING="0",
    VLLM_ALLOW_INSECURE_SERIALIZATION="1",
    TOKENIZERS_PARALLELISM="false",
)

import torch  # noqa: E402
import transformers  # noqa: E402
import vllm  # type: ignore[import-not-found]  # noqa: E402
from vllm import envs  # noqa: E402
from vllm import logger as vllm_logger  # noqa: E402
from vllm.distributed.parallel_state import (  # type: ignore[import-not-found]  # noqa: E402
    cleanup_dist_env_and_memory,
)
from vllm.engine.arg_utils import EngineArgs  # type: ignore[import-not-found]  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # type: ignore[import-not-found]  # noqa: E402
from vllm.v1.engine.llm_engine import LLMEngine  # type: ignore[import-not-found]  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tokenizer_folder(job: dict[str, Any]) -> Path:
    """SmolLM2's tokenizer, converted once from the demo GGUF by transformers."""
    folder = Path(job["tokenizer_dir"])
    if not (folder / "tokenizer.json").exists():
        gguf = Path(job["tokenizer_gguf"])
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.save_pretrained(folder)
    return folder


def build(job: dict[str, Any]) -> None:
    folder = Path(job["folder"])
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(job["config"])
    model_type = config.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **config)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, torch_dtype=torch.bfloat16)
    model.save_pretrained(folder)
    source = tokenizer_folder(job)
    for name in os.listdir(source):
        if name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy(source / name, folder / name)


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def measure(folder: str, setting: dict[str, Any]) -> dict[str, Any]:
    """One engine construction with the API server's defaults (usage context
    OPENAI_API_SERVER: 2048 batched tokens on the CPU build), as sparkstack runs it."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(setting["kv_cache_gib"])
    envs.disable_envs_cache()
    # vLLM logs its KV line with info_once: forget what was logged, so every
    # setting prints its own line even when it repeats an earlier one.
    with contextlib.suppress(AttributeError):
        vllm_logger._print_info_once.cache_clear()
    print(f"PROBE-SETTING {json.dumps(setting)}", flush=True)
    result: dict[str, Any] = dict(setting)
    engine = None
    try:
        args = EngineArgs(model=folder, max_model_len=setting["context"], enforce_eager=True)
        engine = LLMEngine.from_engine_args(args, usage_context=UsageContext.OPENAI_API_SERVER)
        config = engine.vllm_config
        result["engine_weight_bytes"] = sum(engine.apply_model(weight_bytes))
        result["block_size"] = config.cache_config.block_size
        result["num_blocks"] = config.cache_config.num_gpu_blocks
        result["kv_cache_size_tokens"] = getattr(config.cache_config, "kv_cache_size_tokens", None)
        result["max_num_batched_tokens"] = config.scheduler_config.max_num_batched_tokens
        result["dtype"] = str(config.model_config.dtype).removeprefix("torch.")
        result["refused"] = None
    except Exception as exc:  # noqa: BLE001  (any refusal is the measurement)
        text = str(exc).strip().splitlines()
        result["refused"] = f"{type(exc).__name__}: {text[-1] if text else ''}"[:400]
    finally:
        del engine
        gc.collect()
        with contextlib.suppress(Exception):
            cleanup_dist_env_and_memory()
    sys.stdout.flush()
    return result


def probe_model(job: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": model["name"], "transformers": transformers.__version__}
    try:
        build({**job, **model})
    except Exception as exc:  # noqa: BLE001
        out["build_error"] = f"{type(exc).__name__}: {exc}"[:400]
        return out
    out["vllm"] = vllm.__version__
    out["runs"] = []
    for setting in job["settings"]:
        print(f"probe: {model['name']} {setting}", file=sys.stderr, flush=True)
        out["runs"].append(measure(model["folder"], setting))
    return out


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    for model in job["models"]:
        result = probe_model(job, model)
        print("PROBE-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
