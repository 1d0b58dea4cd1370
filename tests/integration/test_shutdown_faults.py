"""Shutdown always cleans up (issue 19, point 3): a start that raises stops the stack
with every engine stopped and the run file removed, the failure reported; `down`
and `up` never signal a pid whose start time or executable no longer match the run
file (pid reuse after a crash)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sparkstack.errors import SupervisorError
from sparkstack.serve import claim_run_file, serve
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.run_file import ProcessIdentity, RunFile
from tests.support import REPO, SPARKSTACK, wait_gone

STUB = REPO / "tests" / "stubs" / "stubborn_engine.py"


async def test_a_start_that_raises_leaves_no_engine_and_no_run_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids_file = tmp_path / "pids"
    stack = load_stack_text(
        f"""
gateway: {{listen: "127.0.0.1:{free_port()}"}}
models:
  first:
    engine: llamacpp
    model: /nonexistent/stub.gguf
    command: [{sys.executable}, {STUB}]
    env: {{STUB_PIDS_FILE: "{pids_file}"}}
    stop_timeout: 1s
  second:
    engine: llamacpp
    model: /nonexistent/stub.gguf
    command: [{sys.executable}, {STUB}]
""",
        "stack.yaml",
    )
    real_start = Supervisor.start

    async def start(self: Supervisor, name: str) -> object:
        if name == "second":
            raise RuntimeError("injected: the adapter blew up")
        return await real_start(self, name)

    monkeypatch.setattr(Supervisor, "start", start)
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state", config_dir=tmp_path)
    with pytest.raises(SupervisorError) as stopped:
        await serve(stack, settings)
    assert "start failed" in str(stopped.value) and "injected" in str(stopped.value)
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) == 2  # the first engine and its child had started
    assert wait_gone(pids, timeout=5) == []
    assert not settings.run_file.exists()


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def stale_run_file(path: Path, pid: int, started: float, exe: str) -> None:
    ghost = ProcessIdentity(pid=pid, started=started, exe=exe)
    RunFile(up=ghost, gateway_url="http://127.0.0.1:9", engines={"brain": ghost}).write(path)


@pytest.mark.parametrize("mismatch", ["start time", "executable"])
def test_down_leaves_an_unrelated_process_with_a_recorded_pid_alone(
    tmp_path: Path, unrelated: subprocess.Popen[bytes], mismatch: str
) -> None:
    real = psutil.Process(unrelated.pid)
    started = real.create_time() - 1000 if mismatch == "start time" else real.create_time()
    exe = sys.executable if mismatch == "executable" else real.exe()
    run_file = tmp_path / "run.json"
    stale_run_file(run_file, unrelated.pid, started, exe)
    env = {**os.environ, "SPARKSTACK_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [*SPARKSTACK, "down"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert unrelated.poll() is None, "down signalled a process that is not ours"
    assert "not running any more" in result.stdout
    assert not run_file.exists()


def test_up_cleans_a_stale_run_file_without_touching_the_pid(
    tmp_path: Path, unrelated: subprocess.Popen[bytes]
) -> None:
    settings = Settings(home=tmp_path, state_dir=tmp_path)
    real = psutil.Process(unrelated.pid)
    stale_run_file(settings.run_file, unrelated.pid, real.create_time() - 1000, real.exe())
    claim_run_file(settings)
    assert unrelated.poll() is None
    assert not settings.run_file.exists()


def test_a_recorded_identity_finds_its_own_process() -> None:
    me = ProcessIdentity.of(os.getpid())
    assert me is not None and me.process() is not None
