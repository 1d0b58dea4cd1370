"""The exported systemd unit passes `systemd-analyze verify` (issue 13, point 3)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


@pytest.mark.parametrize("stack", ["seed002-qwen36-35b-fp8.yaml", "seed000-gpt-oss-pair.yaml"])
def test_unit_passes_systemd_analyze_verify(stack: str, tmp_path: Path) -> None:
    stack_file = tmp_path / "deploy" / stack
    stack_file.parent.mkdir()
    stack_file.write_text((REPO / "examples" / stack).read_text())
    unit = tmp_path / f"sparkstack-{stack_file.stem}.service"
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "systemd", str(stack_file), "-o", str(unit)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = unit.read_text()
    assert f"WorkingDirectory={stack_file.parent}" in text
    assert "Restart=on-failure" in text and "KillMode=mixed" in text
    assert f"up {stack_file}" in text and " down --timeout " in text
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (apt install systemd)"
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert "sparkstack" not in verify.stderr, verify.stderr  # no warning about our unit


def test_systemd_needs_a_stack_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "systemd"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1 and "needs the stack file" in result.stderr
