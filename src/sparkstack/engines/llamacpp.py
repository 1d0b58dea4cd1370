"""llama.cpp through llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``), and its memory model."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from sparkstack.engines.base import (
    GUARD_MODULE,
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
)
from sparkstack.engines.registry import register_engine
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.planner.kv_cache import kv_bytes_per_token, llamacpp_kv
from sparkstack.planner.machine import MachineProfile
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

DEFAULT_CONTEXT = 4096
N_UBATCH = 512
RUNTIME_BYTES = 64 * 2**20
_GGML_TYPE_IDS = {"f16": 1, "q8_0": 8}
_TOKENIZE_TIMEOUT = aiohttp.ClientTimeout(total=30)


def compute_buffer_bytes(facts: ModelFacts, n_seq: int) -> int:
    """Estimated ggml compute + output buffers: the logits of one ubatch dominate
    (SmolLM2-135M: 512 x (49152 + 4 x 576) x 4 B = 100.5 MiB; llama.cpp logged 99.38),
    plus the output buffer (vocab x 4 B per sequence: 0.19 MiB logged)."""
    return N_UBATCH * (facts.vocab_size + 4 * facts.hidden_size) * 4 + facts.vocab_size * 4 * n_seq


@register_engine
class LlamaCppEngine(EngineAdapter):
    name = "llamacpp"
    default_image = None  # no official llama-cpp-python image: set image:
    container_command = ["python3", "-m", "llama_cpp.server"]
    reports_stream_usage = False
    internal_key_env = "API_KEY"  # llama-cpp-python's ServerSettings.api_key
    routes = {
        **EngineAdapter.routes,
        "/tokenize": "/extras/tokenize",
        "/detokenize": "/extras/detokenize",
    }

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="llamacpp",
            module="llama_cpp.server",
            install_hint="run scripts/install.sh (builds llama-cpp-python[server])",
        )
        if spec.command is None:
            # llama-cpp-python has no middleware hook: the guard wraps its uvicorn.run.
            command = [*command[:-1], GUARD_MODULE, command[-1]]
        threads = str(os.cpu_count() or 1)
        fallback = [] if planned else ["--n_ctx", str(spec.context or DEFAULT_CONTEXT)]
        head = [
            *command,
            "--model", source,
            "--model_alias", spec.name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_threads", threads,
            "--n_threads_batch", threads,
            # The default (True) aborts a running stream whenever another request
            # arrives: behind a shared gateway, requests must queue instead.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        # /v1/models waits for the model lock while a stream is generated; the
        # OpenAPI document is served by the server's loop alone: a liveness signal.
        return finish_launch(spec, source, head, planned, "/v1/models", fallback,
                             live_path="/openapi.json")  # fmt: skip

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        n_seq = spec.concurrency or 1
        n_ctx = (spec.context or DEFAULT_CONTEXT) * n_seq  # cells are shared by all slots
        cache_type = "q8_0" if spec.kv_cache_dtype == "fp8" else "f16"
        kv = llamacpp_kv(facts, n_ctx, n_seq, cache_type, cache_type, N_UBATCH)
        args = ["--n_ctx", str(n_ctx)]
        if cache_type != "f16":
            type_id = str(_GGML_TYPE_IDS[cache_type])
            args += ["--type_k", type_id, "--type_v", type_id, "--flash_attn", "True"]
        if machine.device == "cuda":
            args += ["--n_gpu_layers", "-1"]
        notes = []
        if spec.kv_cache_dtype == "fp8":
            notes.append("llama.cpp has no fp8 KV cache; q8_0 is used (8.5 bits per value)")
        return MemoryEstimate(
            weights_bytes=facts.weight_bytes,
            kv_bytes_per_token=kv_bytes_per_token(facts, 2),
            kv_bytes=kv.kv_bytes + kv.state_bytes,
            kv_tokens=kv.cells,
            overhead_bytes=compute_buffer_bytes(facts, n_seq) + RUNTIME_BYTES,
            spike_bytes=0,
            engine_args=args,
            notes=notes,
        )

    async def count_prompt_tokens(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        payload: dict[str, Any],
        api_key: str | None,
    ) -> int:
        """Tokens of ``prompt``, or of the chat messages' contents (the chat template's
        own tokens are not counted: the server does not expose the rendered prompt)."""
        prompt = payload.get("prompt")
        if not isinstance(prompt, str):
            messages = payload.get("messages") or []
            prompt = "\n".join(
                m["content"]
                for m in messages
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
        try:
            async with session.post(
                base_url + "/extras/tokenize/count",
                json={"input": prompt},
                headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
                timeout=_TOKENIZE_TIMEOUT,
            ) as response:
                if response.status != 200:
                    return 0
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            return 0
        count = body.get("count") if isinstance(body, dict) else None
        return count if isinstance(count, int) else 0
