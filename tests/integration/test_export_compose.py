"""The exported compose project is accepted by a real compose implementation
(Debian's docker-compose 1.29: `docker-compose config`) for the seed 000 and seed
002 stacks, and carries the plan's flags, the HF cache mount, the secrets from
.env by reference and host network (issue 13, point 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

STACKS = [
    "seed000-gpt-oss-pair.yaml",
    "seed002-qwen36-35b-fp8.yaml",
    "containers/seed000-trtllm-pair.yaml",
    "containers/seed002-qwen36-35b-fp8.yaml",
]


def sparkstack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparkstack", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("stack", STACKS)
def test_compose_config_accepts_the_export(stack: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    stack_file = REPO / "examples" / stack
    out = tmp_path / "project"
    result = sparkstack("export", "compose", str(stack_file), "--out-dir", str(out), env=env)
    assert result.returncode == 0, result.stderr
    (out / ".env").write_text("SPARKSTACK_ENGINE_KEY=sk-test\nHF_TOKEN=hf_test\n")
    (out / ".env").chmod(0o600)
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is needed (apt install docker-compose)"
    checked = subprocess.run(
        [compose, "config"], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
    config = yaml.safe_load(checked.stdout)

    plan = json.loads(sparkstack("plan", str(stack_file), "--json", "--offline", env=env).stdout)
    services = config["services"]
    assert set(services) == {m["name"] for m in plan["models"]} | {"gateway"}
    keyed = set()
    for model in plan["models"]:
        service = services[model["name"]]
        command = service["command"]
        for flag in model["engine_args"]:  # the planned flags, in order
            assert flag in command, (flag, command)
        assert service["network_mode"] == "host"
        assert f"{tmp_path / 'hf'}:/root/.cache/huggingface:rw" in service["volumes"]
        if model["engine"] != "trtllm":  # TensorRT-LLM's server takes no key
            keyed.add(model["name"])
            assert "sk-test" in service["environment"].values()  # from .env, by reference
            # the key guard from the project's own folder, on every vLLM path
            assert service["environment"]["SPARKSTACK_ENGINE_KEY"] == "sk-test"
            assert f"{out}/guard:/opt/sparkstack/guard:ro" in service["volumes"]
            assert command[-2:] == ["--middleware", "sparkstack_engine_guard.RequireKey"]
    assert (out / "guard" / "sparkstack_engine_guard.py").is_file() == bool(keyed)
    assert "sk-test" not in (out / "compose.yaml").read_text()
    gateway = services["gateway"]
    assert gateway["network_mode"] == "host" and gateway["depends_on"]
    assert gateway["command"] == ["sparkstack", "up", "/etc/sparkstack/stack.yaml"]
    engines = yaml.safe_load((out / "stack.compose.yaml").read_text())["models"]
    assert {m["engine"] for m in engines.values()} == {"external"}
    assert {n for n, m in engines.items() if m.get("api_key_env") == "SPARKSTACK_ENGINE_KEY"} == (
        keyed
    )


def test_compose_without_the_engine_key_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "project"
    stack = str(REPO / "examples/seed002-qwen36-35b-fp8.yaml")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    assert sparkstack("export", "compose", stack, "--out-dir", str(out), env=env).returncode == 0
    (out / ".env").write_text("HF_TOKEN=hf_test\n")
    checked = subprocess.run(
        ["docker-compose", "config"], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode != 0 and "set SPARKSTACK_ENGINE_KEY in .env" in checked.stderr
