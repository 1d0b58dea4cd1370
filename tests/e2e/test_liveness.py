"""Liveness after ready (issue 19, point 3): a llama.cpp engine frozen with
SIGSTOP (process alive, serving nothing) is found by the liveness probe and marked
failed within its bound, killed and restarted per its always-on policy, while the
other model keeps answering throughout."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SMOL_GGUF, UpProcess, get_json, serving

pytestmark = pytest.mark.engines

INTERVAL, TIMEOUT, FAILURES = 0.5, 1.0, 2
BOUND = INTERVAL + FAILURES * (INTERVAL + TIMEOUT) + 1.0
"""Seconds from the freeze to "failed": the probe period, then each failed probe's
wait and timeout, plus a second of slack for this 2-core machine."""


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("liveness")
    stack = folder / "stack.yaml"
    model = (
        f"    engine: llamacpp\n    model: {SMOL_GGUF}\n    context: 512\n"
        f"    liveness_interval: {INTERVAL}s\n    liveness_timeout: {TIMEOUT}s\n"
        f"    liveness_failures: {FAILURES}\n"
    )
    stack.write_text(f"models:\n  frozen:\n{model}  steady:\n{model}")
    with serving(stack, folder / "state", timeout=120) as up:
        yield up


def ask(up: UpProcess, model: str) -> int:
    body = f'{{"model": "{model}", "prompt": "Hi", "max_tokens": 2}}'.encode()
    request = urllib.request.Request(
        up.url + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def states(up: UpProcess) -> dict[str, object]:
    models = get_json(up.url + "/health")["models"]
    assert isinstance(models, dict)
    return models


def test_a_frozen_engine_is_failed_restarted_and_the_other_keeps_serving(
    two_models: UpProcess, tmp_path: Path
) -> None:
    up = two_models
    pid = up.engine_pids()["frozen"]
    steady_answers: list[int] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            steady_answers.append(ask(up, "steady"))
            time.sleep(0.2)

    worker = threading.Thread(target=keep_asking)
    worker.start()
    try:
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        while states(up)["frozen"] == "ready":
            assert time.monotonic() - frozen_at < BOUND, "the frozen engine was not noticed"
            time.sleep(0.1)
        assert time.monotonic() - frozen_at < BOUND
        deadline = time.monotonic() + 60
        while states(up)["frozen"] != "ready":  # always_on: restarted after 1 s back-off
            assert time.monotonic() < deadline, "the hung engine was not restarted"
            time.sleep(0.2)
        assert up.engine_pids()["frozen"] != pid
        assert ask(up, "frozen") == 200
    finally:
        done.set()
        worker.join()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert steady_answers and set(steady_answers) == {200}
    assert "hung: 2 liveness probes" in up.output()
