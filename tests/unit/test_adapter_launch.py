"""Every adapter's launch, without starting anything (issue 18): argv from the
stack entry and the plan, the guard where sparkstack runs the engine's Python,
secrets never in argv, the engine hooks the supervisor asks (sleep, KV lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkstack.engines.base import GUARD_DIR, GUARD_MODULE, MemoryEstimate
from sparkstack.engines.registry import forwarded_routes, get_engine, known_engines
from sparkstack.errors import EngineError
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.stack.schema import ModelSpec


def spec(yaml: str) -> ModelSpec:
    stack = load_stack_text(f"models:\n  m: {yaml}\n", "stack.yaml", known_engines())
    return stack.models["m"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    for venv in ("vllm", "llamacpp", "sglang", "trtllm"):
        python = tmp_path / "engines" / venv / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text("")
    return Settings(home=tmp_path, state_dir=tmp_path / "state")


def test_vllm_launch_has_the_guard_and_the_plan(settings: Settings) -> None:
    planned = MemoryEstimate(1, 1, 1, 1, 1, 0, engine_args=["--max-model-len", "4096"],
                             engine_env={"VLLM_CPU_KVCACHE_SPACE": "2"})  # fmt: skip
    launch = get_engine("vllm").launch(
        spec("{engine: vllm, model: org/m, args: [--seed, '1']}"), 8001, settings, planned
    )
    argv = launch.argv
    assert argv[:3] == [str(settings.engines_dir / "vllm/bin/python"), "-m",
                        "vllm.entrypoints.openai.api_server"]  # fmt: skip
    assert (
        argv[argv.index("--port") + 1] == "8001" and argv[argv.index("--host") + 1] == "127.0.0.1"
    )
    assert argv[argv.index("--middleware") + 1] == f"{GUARD_MODULE}.RequireKey"
    assert argv[-2:] == ["--seed", "1"]  # the stack's args last, so they win
    assert "--max-model-len" in argv
    assert str(GUARD_DIR) in launch.env["PYTHONPATH"]
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert launch.ready_path == "/health"


def test_llamacpp_launch_runs_under_the_guard(settings: Settings) -> None:
    launch = get_engine("llamacpp").launch(
        spec("{engine: llamacpp, model: /m.gguf, context: 512}"), 8002, settings, None
    )
    assert launch.argv[1:4] == ["-m", GUARD_MODULE, "llama_cpp.server"]
    assert launch.argv[launch.argv.index("--n_ctx") + 1] == "512"
    assert launch.argv[launch.argv.index("--interrupt_requests") + 1] == "False"
    assert launch.live_path == "/openapi.json"


def test_an_own_command_gets_no_guard(settings: Settings) -> None:
    launch = get_engine("vllm").launch(
        spec("{engine: vllm, model: org/m, command: [/opt/vllm/bin/python, -m, vllm.x]}"),
        8003, settings, None,
    )  # fmt: skip
    assert launch.argv[0] == "/opt/vllm/bin/python"
    assert "--middleware" not in launch.argv and "PYTHONPATH" not in launch.env


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_other_engines_launch_on_loopback(settings: Settings, engine: str) -> None:
    launch = get_engine(engine).launch(spec(f"{{engine: {engine}, model: org/m}}"), 8004,
                                       settings, None)  # fmt: skip
    joined = " ".join(launch.argv)
    assert "127.0.0.1" in joined and "8004" in joined
    assert not any("key" in arg.lower() and "=" in arg for arg in launch.argv)


def test_a_missing_engine_venv_says_how_to_install(tmp_path: Path) -> None:
    bare = Settings(home=tmp_path, state_dir=tmp_path)
    with pytest.raises(EngineError, match="scripts/install.sh"):
        get_engine("vllm").launch(spec("{engine: vllm, model: org/m}"), 1, bare, None)


def test_engine_hooks_the_supervisor_asks() -> None:
    vllm, llama = get_engine("vllm"), get_engine("llamacpp")
    asleep = MemoryEstimate(0, 0, 0, 0, 0, 0, engine_args=["--enable-sleep-mode"])
    assert vllm.can_sleep(asleep) and not vllm.can_sleep(None)
    assert not llama.can_sleep(asleep)
    assert vllm.sleep_level(unified=True) == 2 and vllm.sleep_level(unified=False) == 1
    sglang = get_engine("sglang")
    saver = MemoryEstimate(0, 0, 0, 0, 0, 0, engine_args=["--enable-memory-saver"])
    assert sglang.can_sleep(saver) and not sglang.can_sleep(asleep)
    assert sglang.sleep_level(unified=False) == 2
    assert vllm.kv_tokens_from_log("x\nKV cache size: 93,184 tokens\n") == 93184
    assert llama.kv_tokens_from_log("llama_kv_cache: size =   45.00 MiB (  2048 cells") == 2048
    assert llama.kv_tokens_from_log("nothing") is None
    assert "/v1/chat/completions" in forwarded_routes() and "/tokenize" in forwarded_routes()
