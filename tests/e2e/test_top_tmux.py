"""`sparkstack top` in a real terminal (tmux) against a real gateway (two
llama.cpp models, an admin key): it draws the models and the memory bar; when
the gateway stops it keeps the last picture under an "unreachable since" line;
when the gateway comes back on the same port the picture recovers without
restarting top; a key press unloads the selected model. A wrong key against the
real gateway is one line (issue 12, points 2 and 5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkstack.supervisor.ports import free_port
from tests.support import REPO, SMOL_GGUF, SPARKSTACK, UpProcess

pytestmark = pytest.mark.engines
SESSION = f"sparkstack-top-{os.getpid()}"


def start_on(stack_file: Path, state_dir: Path, port: int) -> UpProcess:
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(state_dir),
        "SPARKSTACK_CONFIG_DIR": str(state_dir / "config"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = state_dir / f"up-{time.monotonic_ns()}.out"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [*SPARKSTACK, "up", str(stack_file), "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    up = UpProcess(proc, f"http://127.0.0.1:{port}", env, state_dir, log_path)
    up.wait_ready(timeout=120)
    return up


def stop(up: UpProcess) -> None:
    up.sparkstack("down")
    up.proc.wait(timeout=60)


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_screen(check: Callable[[str], bool], what: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen()
        if check(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{what} not on screen after {timeout}s:\n{text}")


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    assert shutil.which("tmux"), "tmux is not installed (scripts/install.sh --dev)"
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(
        "machine: auto\nhost_reserve_gib: 2\nmodels:\n"
        f"  smol:\n    engine: llamacpp\n    model: {SMOL_GGUF}\n    context: 1024\n"
        f"  second:\n    engine: llamacpp\n    model: {SMOL_GGUF}\n    context: 512\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    key = subprocess.run(
        [*SPARKSTACK, "keys", "create", "ops", "--admin", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SPARKSTACK_CONFIG_DIR": str(state / "config")},
    ).stdout.strip()
    yield stack_file, state, key
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_top_in_tmux_survives_a_gateway_restart(keyed: tuple[Path, Path, str]) -> None:
    stack_file, state, key = keyed
    port = free_port()
    up = start_on(stack_file, state, port)
    try:
        wrong = subprocess.run(
            [*SPARKSTACK, "top", up.url, "--key", "sk-ss-wrong"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1
        assert "refused the key" in wrong.stderr and "HTTP 401" in wrong.stderr

        command = f"{sys.executable} -m sparkstack top {up.url} --key {key}"
        tmux("new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", command)
        tmux("resize-window", "-t", SESSION, "-x", "200", "-y", "50")
        first = wait_screen(
            lambda s: "smol" in s and "second" in s and s.count("ready") >= 2, "both models ready"
        )
        assert "█" in first and "host reserve" in first and "free" in first
        assert "unreachable" not in first

        stop(up)
        down = wait_screen(lambda s: "unreachable since" in s, "the unreachable line")
        assert "smol" in down and "second" in down and "█" in down  # the last picture

        up = start_on(stack_file, state, port)
        back = wait_screen(
            lambda s: "unreachable" not in s and s.count("ready") >= 2, "the recovered picture"
        )
        assert "smol" in back and "host reserve" in back

        tmux("send-keys", "-t", SESSION, "j")  # select `second`
        tmux("send-keys", "-t", SESSION, "u")
        wait_screen(lambda s: "unload second" in s and "stopped" in s, "second unloaded")
        tmux("send-keys", "-t", SESSION, "q")
        deadline = time.monotonic() + 10
        while SESSION in subprocess.run(["tmux", "ls"], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "top did not quit on q"
            time.sleep(0.2)
    finally:
        if up.proc.poll() is None:
            stop(up)
        up.kill()
