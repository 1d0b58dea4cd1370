"""The TensorRT-LLM and SGLang argv/YAML sparkstack builds, checked by the engines'
own parsers (issue 10, must-show 3).

* SGLang 0.5.23: its own ``ServerArgs.add_cli_args`` argparse parser, imported on CPU
  from the wheel `scripts/install.sh --dev` puts in $SPARKSTACK_HOME/parsers/sglang
  (run with the vLLM venv's torch).
* TensorRT-LLM does not import without CUDA: each flag is checked against the
  click options of ``trtllm-serve`` in tensorrt_llm/commands/serve.py at
  NVIDIA/TensorRT-LLM@00209af149e7774406881a37283dce303571eb11, transcribed below,
  and the YAML keys against llmapi/llm_args.py (``KvCacheConfig``: dtype,
  free_gpu_memory_fraction, max_tokens; ``cuda_graph_config``;
  ``disable_overlap_scheduler``; ``print_iter_log`` — the same keys seed 000's
  hand-written YAML ran with).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from sparkstack.engines.base import LaunchSpec
from sparkstack.engines.registry import get_engine
from sparkstack.engines.sglang import KEY_SHIM, MODULE
from sparkstack.machine import resolve_machine
from sparkstack.planner.plan import build_plan
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text

PARSERS = Settings.from_env().home / "parsers" / "sglang"
VLLM_PYTHON = Settings.from_env().engines_dir / "vllm" / "bin" / "python"


def _launch(text: str, tmp_path: Path) -> LaunchSpec:
    stack = load_stack_text(text, "test.yaml")
    plan = build_plan(stack, resolve_machine("dgx-spark"))
    [spec] = stack.models.values()
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state")
    return get_engine(spec.engine).launch(spec, 8000, settings, plan.model(spec.name).estimate())


SGLANG_STACK = """
machine: dgx-spark
models:
  qwen:
    engine: sglang
    model: Qwen/Qwen3.6-35B-A3B-FP8
    command: [python3, -m, sglang.launch_server]
    context: 32768
    concurrency: 8
    kv_cache_dtype: fp8
    enforce_eager: true
    sleep_mode: true
"""


@pytest.mark.skipif(not (PARSERS / ".sglang-0.5.23").exists(), reason="run install.sh --dev")
def test_sglang_argv_parses_with_sglangs_own_parser(tmp_path: Path) -> None:
    launch = _launch(SGLANG_STACK, tmp_path)
    assert launch.argv[:3] == ["python3", "-c", KEY_SHIM]
    argv = [*launch.argv[3:], "--api-key", "k"]  # what the shim appends inside
    script = (
        "import argparse, json, sys\n"
        "from sglang.srt.server_args import ServerArgs\n"
        "p = argparse.ArgumentParser(); ServerArgs.add_cli_args(p)\n"
        "print(json.dumps(vars(p.parse_args(sys.argv[1:])), default=str))\n"
    )
    result = subprocess.run(
        [str(VLLM_PYTHON), "-c", script, *argv], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(PARSERS)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["model_path"] == "Qwen/Qwen3.6-35B-A3B-FP8"
    assert parsed["served_model_name"] == "qwen"
    assert parsed["context_length"] == 32768 and parsed["max_running_requests"] == 8
    assert 0 < parsed["mem_fraction_static"] < 1 and parsed["max_total_tokens"] > 0
    assert parsed["kv_cache_dtype"] == "fp8_e4m3" and parsed["disable_cuda_graph"] is True
    assert parsed["enable_memory_saver"] is True and parsed["api_key"] == "k"


def test_sglang_key_shim_keeps_the_key_out_of_cmdline(tmp_path: Path) -> None:
    """The shim hands the key to the module's argv, never to /proc/PID/cmdline."""
    probe = tmp_path / "probe_argv.py"
    probe.write_text(
        "import json, sys\n"
        "cmdline = open('/proc/self/cmdline', 'rb').read().decode()\n"
        "print(json.dumps({'argv': sys.argv, 'cmdline': cmdline}))\n"
    )
    shim = KEY_SHIM.replace(MODULE, "probe_argv")
    result = subprocess.run(
        ["python3", "-c", shim, "--port", "1"], capture_output=True, text=True, timeout=30,
        env={**os.environ, "SPARKSTACK_ENGINE_KEY": "s3cret", "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    out = json.loads(result.stdout)
    assert out["argv"][-2:] == ["--api-key", "s3cret"]
    assert "s3cret" not in out["cmdline"]


def _trtllm_serve() -> click.Command:
    """trtllm-serve's options (serve.py @ 00209af1), names, aliases, types and flags."""

    @click.command("serve")
    @click.argument("model", type=str)
    @click.option("--tokenizer", type=str)
    @click.option("--host", type=str, default="localhost")
    @click.option("--port", type=int, default=8000)
    @click.option("--backend", type=click.Choice(["pytorch", "tensorrt", "_autodeploy", "trt"]))
    @click.option("--log_level", type=str)
    @click.option("--max_beam_width", type=int)
    @click.option("--max_batch_size", type=int)
    @click.option("--max_num_tokens", type=int)
    @click.option("--max_seq_len", type=int)
    @click.option("--tensor_parallel_size", "--tp_size", type=int)
    @click.option("--pipeline_parallel_size", "--pp_size", type=int)
    @click.option("--free_gpu_memory_fraction", "--kv_cache_free_gpu_memory_fraction", type=float)
    @click.option("--trust_remote_code", is_flag=True)
    @click.option("--config", "--extra_llm_api_options", "extra_llm_api_options", type=str)
    @click.option("--reasoning_parser", type=str)
    @click.option("--tool_parser", type=str)
    def serve(**kwargs: object) -> dict[str, object]:
        return kwargs

    return serve


TRTLLM_STACK = """
machine: dgx-spark
models:
  brain:
    engine: trtllm
    model: openai/gpt-oss-120b
    context: 32768
    concurrency: 32
    kv_cache_gib: 12
    enforce_eager: true
"""
KV_CACHE_KEYS = {"dtype", "free_gpu_memory_fraction", "max_tokens"}
TOP_LEVEL_KEYS = {"kv_cache_config", "cuda_graph_config", "disable_overlap_scheduler",
                  "print_iter_log"}  # fmt: skip


def test_trtllm_argv_and_yaml_match_trtllm_serve(tmp_path: Path) -> None:
    launch = _launch(TRTLLM_STACK, tmp_path)
    assert launch.argv[0] == "trtllm-serve"
    parsed = _trtllm_serve().main(launch.argv[1:], standalone_mode=False)
    assert isinstance(parsed, dict)
    assert parsed["model"] == "openai/gpt-oss-120b"
    assert parsed["max_batch_size"] == 32 and parsed["max_seq_len"] == 32768
    assert parsed["trust_remote_code"] is True  # the catalog recipe (seed 000)
    [path] = launch.files
    assert parsed["extra_llm_api_options"] == path
    options = yaml.safe_load(launch.files[path])
    assert set(options) <= TOP_LEVEL_KEYS
    assert set(options["kv_cache_config"]) <= KV_CACHE_KEYS
    assert 0 < options["kv_cache_config"]["free_gpu_memory_fraction"] < 1
    assert options["kv_cache_config"]["max_tokens"] > 0
    assert options["cuda_graph_config"] is None  # enforce_eager
    assert options["disable_overlap_scheduler"] is True  # the recipe
    assert not any(k.startswith("SPARKSTACK_TRTLLM") for k in launch.env)
