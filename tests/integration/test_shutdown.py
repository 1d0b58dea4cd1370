"""`sparkstack down` and Ctrl-C on `sparkstack up` leave no engine process alive,
even when an engine and its child ignore SIGTERM (issue 2, point 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, SMOL_GGUF, SPARKSTACK, UpProcess, start_up, wait_gone

STUB = REPO / "tests" / "stubs" / "stubborn_engine.py"


def _stack(tmp_path: Path, pids_file: Path) -> Path:
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        f"""
models:
  stubborn:
    engine: llamacpp
    model: {SMOL_GGUF}
    command: [{sys.executable}, {STUB}]
    env: {{STUB_PIDS_FILE: "{pids_file}"}}
    stop_timeout: 1s
    startup_timeout: 60s
"""
    )
    return stack


@pytest.fixture
def stubborn_up(tmp_path: Path) -> tuple[UpProcess, list[int]]:
    pids_file = tmp_path / "pids"
    up = start_up(_stack(tmp_path, pids_file), tmp_path / "state")
    try:
        up.wait_ready(timeout=60)
    except AssertionError:
        up.kill()
        raise
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) == 2
    return up, pids


def test_down_kills_engine_that_ignores_sigterm(stubborn_up: tuple[UpProcess, list[int]]) -> None:
    up, pids = stubborn_up
    try:
        result = up.sparkstack("down", timeout=60)
        assert result.returncode == 0, result.stderr
        assert "stack stopped" in result.stdout
        assert up.proc.wait(timeout=30) == 0
        assert wait_gone(pids, timeout=5) == []
        assert "after ignoring SIGTERM for 1s" in up.output()
        assert not (up.state_dir / "run.json").exists()
    finally:
        up.kill()


def test_ctrl_c_on_up_kills_engine_that_ignores_sigterm(
    stubborn_up: tuple[UpProcess, list[int]],
) -> None:
    up, pids = stubborn_up
    try:
        up.interrupt()
        assert up.proc.wait(timeout=30) == 0
        assert wait_gone(pids, timeout=5) == []
    finally:
        up.kill()


def test_down_cleans_up_after_a_killed_up(stubborn_up: tuple[UpProcess, list[int]]) -> None:
    """If `up` itself was SIGKILLed, `down` still ends the engines it recorded."""
    up, pids = stubborn_up
    up.kill()
    assert wait_gone(pids, timeout=1) != []  # orphans are still there
    result = up.sparkstack("down", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "killed leftover processes of stubborn" in result.stdout
    assert wait_gone(pids, timeout=5) == []


def test_down_without_a_stack(tmp_path: Path) -> None:
    env = {**os.environ, "SPARKSTACK_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [*SPARKSTACK, "down"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "no stack is running" in result.stdout
