"""llama.cpp through llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``)."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from sparkstack.engines.base import EngineAdapter, LaunchSpec, local_source_env
from sparkstack.engines.registry import register_engine
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source

DEFAULT_CONTEXT = 4096
_TOKENIZE_TIMEOUT = aiohttp.ClientTimeout(total=30)


@register_engine
class LlamaCppEngine(EngineAdapter):
    name = "llamacpp"

    def launch(self, spec: ModelSpec, port: int, settings: Settings) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="llamacpp",
            module="llama_cpp.server",
            install_hint="run scripts/install.sh (builds llama-cpp-python[server])",
        )
        threads = str(os.cpu_count() or 1)
        argv = [
            *command,
            "--model", source,
            "--model_alias", spec.name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(spec.context or DEFAULT_CONTEXT),
            "--n_threads", threads,
            "--n_threads_batch", threads,
            # The default (True) aborts a running stream whenever another request
            # arrives: behind a shared gateway, requests must queue instead.
            "--interrupt_requests", "False",
            *spec.args,
        ]  # fmt: skip
        return LaunchSpec(
            argv=argv, env={**local_source_env(source), **spec.env}, ready_path="/v1/models"
        )

    reports_stream_usage = False

    async def count_prompt_tokens(
        self, session: aiohttp.ClientSession, base_url: str, payload: dict[str, Any]
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
                timeout=_TOKENIZE_TIMEOUT,
            ) as response:
                if response.status != 200:
                    return 0
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            return 0
        count = body.get("count") if isinstance(body, dict) else None
        return count if isinstance(count, int) else 0
