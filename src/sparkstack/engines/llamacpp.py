"""llama.cpp through llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``), its memory model is in ``llamacpp_memory``."""

from __future__ import annotations

import os
import re
from typing import Any

import aiohttp

from sparkstack.engines.base import (
    GUARD_MODULE,
    EngineAdapter,
    LaunchSpec,
    MemoryEstimate,
    finish_launch,
    last_match,
)
from sparkstack.engines.llamacpp_memory import DEFAULT_CONTEXT, llamacpp_memory
from sparkstack.engines.registry import register_engine
from sparkstack.machine import MachineProfile
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

_KV_LINE = re.compile(r"llama_kv_cache: size =\s+[\d.]+ MiB \(\s*(\d+) cells")
_TOKENIZE_TIMEOUT = aiohttp.ClientTimeout(total=30)


SERVER_MODULE = "llama_cpp.server"


def _with_guard(command: list[str]) -> list[str]:
    """``PYTHON -m MODULE`` -> ``PYTHON -m sparkstack_engine_guard MODULE``:
    llama-cpp-python has no middleware hook, so the guard wraps its uvicorn.run."""
    return [*command[:2], GUARD_MODULE, *command[2:]]


@register_engine
class LlamaCppEngine(EngineAdapter):
    name = "llamacpp"
    default_image = None  # no official llama-cpp-python image: set image:
    container_command = ["python3", "-m", SERVER_MODULE]
    reports_stream_usage = False
    request_ids_as_uuid = True  # llama-cpp-python's starlette-context RequestIdPlugin
    internal_key_env = "API_KEY"  # llama-cpp-python's ServerSettings.api_key
    routes = {
        **EngineAdapter.routes,
        "/tokenize": "/extras/tokenize",
        "/detokenize": "/extras/detokenize",
    }

    takes_guard = True

    def guarded_argv(self, argv: list[str]) -> list[str] | None:
        """Only ``PYTHON -m llama_cpp.server ...`` can be wrapped."""
        return _with_guard(argv) if argv[1:3] == ["-m", SERVER_MODULE] else None

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="llamacpp",
            module=SERVER_MODULE,
            install_hint="run scripts/install.sh (builds llama-cpp-python[server])",
        )
        if spec.command is None:
            command = _with_guard(command)
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
        return finish_launch(
            spec, source, head, planned, "/v1/models", fallback, live_path="/openapi.json"
        )

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        return llamacpp_memory(facts, spec, machine)

    def kv_tokens_from_log(self, text: str) -> int | None:
        return last_match(_KV_LINE, text)

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
