"""The engine key guard in containers, without starting anything: vLLM and llama.cpp
containers mount the guard read-only and their command loads it from there, whether
the command is the image's or the stack's; a command that cannot take it (and an
engine without the guard) is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkstack.containers.config import container_config
from sparkstack.containers.launch import engine_launch
from sparkstack.engines.base import GUARD_DIR, GUARD_IN_CONTAINER, GUARD_MODULE
from sparkstack.engines.registry import get_engine, known_engines
from sparkstack.settings import Settings
from sparkstack.stack import Stack, load_stack_text

GUARD_MOUNT = f"{GUARD_DIR}:{GUARD_IN_CONTAINER}:ro"


def stack(model: str) -> Stack:
    text = f"container: {{runtime: container, cli: podman}}\nmodels:\n  m: {model}\n"
    return load_stack_text(text, "stack.yaml", known_engines())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, state_dir=tmp_path / "state")


def launch_and_mounts(
    model: str, settings: Settings
) -> tuple[list[str], dict[str, str], list[str]]:
    s = stack(model)
    spec = s.models["m"]
    adapter = get_engine(spec.engine)
    launch = engine_launch(s, spec, adapter, 8001, settings, None)
    config = container_config(s, spec, adapter, "test", cuda=False)
    return launch.argv, launch.env, config.mounts


def test_vllm_image_command_loads_the_guard(settings: Settings) -> None:
    argv, env, mounts = launch_and_mounts("{engine: vllm, model: org/m}", settings)
    assert argv[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[-2:] == ["--middleware", f"{GUARD_MODULE}.RequireKey"]
    assert env["PYTHONPATH"] == GUARD_IN_CONTAINER  # not the host's path
    assert GUARD_MOUNT in mounts


def test_vllm_stack_command_loads_it_too(settings: Settings) -> None:
    model = "{engine: vllm, model: org/m, command: [vllm, serve], env: {PYTHONPATH: /x}}"
    argv, env, _ = launch_and_mounts(model, settings)
    assert argv[:2] == ["vllm", "serve"] and argv.count("--middleware") == 1
    assert env["PYTHONPATH"] == f"{GUARD_IN_CONTAINER}:/x"


def test_llamacpp_module_command_runs_under_the_guard(settings: Settings) -> None:
    model = "{engine: llamacpp, model: /m.gguf, image: img, command: [/py, -m, llama_cpp.server]}"
    argv, env, mounts = launch_and_mounts(model, settings)
    assert argv[:4] == ["/py", "-m", GUARD_MODULE, "llama_cpp.server"]
    assert env["PYTHONPATH"] == GUARD_IN_CONTAINER and GUARD_MOUNT in mounts


def test_llamacpp_other_command_is_left_alone(settings: Settings) -> None:
    model = "{engine: llamacpp, model: /m.gguf, image: img, command: [/srv/llama-server]}"
    argv, env, _ = launch_and_mounts(model, settings)
    assert argv[0] == "/srv/llama-server" and GUARD_MODULE not in argv
    assert "PYTHONPATH" not in env


def test_an_engine_without_the_guard_mounts_nothing(settings: Settings) -> None:
    argv, env, mounts = launch_and_mounts("{engine: sglang, model: org/m}", settings)
    assert GUARD_MODULE not in " ".join(argv) and "PYTHONPATH" not in env
    assert GUARD_MOUNT not in mounts
