"""One error boundary in the CLI (issue 18): documented exit codes (1 error,
2 usage, 3 does not fit) and a one-line message, never a traceback, for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import SPARKSTACK


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(tmp_path),
        "SPARKSTACK_CONFIG_DIR": str(tmp_path),
    }
    return subprocess.run([*SPARKSTACK, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("plan", "no-such-stack.yaml"), 1, "no such stack file"),
        (("up", "--listen", "nonsense"), 2, "--listen"),
        (("no-such-command",), 2, "No such command"),
        (("logs", "nobody"), 1, "no log for 'nobody'"),
        (("keys", "revoke", "nobody"), 1, "no active key"),
        (("status",), 1, "no stack is running"),
        (("reload",), 1, "no stack is running"),
        (("up", "--watch"), 2, "--watch needs a STACK_FILE"),
        (("bench", "compare", "/nonexistent-run"), 1, "error:"),
    ],
)
def test_bad_input_exits_with_its_code_and_one_message(
    args: tuple[str, ...], code: int, words: str, tmp_path: Path
) -> None:
    result = run(*args, tmp_path=tmp_path)
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_stack_file_names_its_line(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("models:\n  a:\n    engine: vllmm\n    model: x\n")
    result = run("plan", str(stack), tmp_path=tmp_path)
    assert result.returncode == 1
    assert f"{stack} line 3: models.a.engine: unknown engine 'vllmm'" in result.stderr
    assert "Traceback" not in result.stderr and sys.executable
