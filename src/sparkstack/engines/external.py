"""A model already served elsewhere (another machine, a running Ollama or vLLM):
routed like the others, never started or stopped by sparkstack."""

from __future__ import annotations

from sparkstack.engines.base import EngineAdapter, LaunchSpec, MemoryEstimate
from sparkstack.engines.registry import register_engine
from sparkstack.errors import EngineError
from sparkstack.machine import MachineProfile
from sparkstack.modelfacts.facts import ModelFacts
from sparkstack.settings import Settings
from sparkstack.stack.schema import ModelSpec


@register_engine
class ExternalEngine(EngineAdapter):
    name = "external"
    managed = False
    routes = {
        **EngineAdapter.routes,
        "/v1/responses": "/v1/responses",
        "/v1/rerank": "/v1/rerank",
        "/tokenize": "/tokenize",
        "/detokenize": "/detokenize",
    }

    def launch(
        self, spec: ModelSpec, port: int, settings: Settings, planned: MemoryEstimate | None
    ) -> LaunchSpec:
        raise EngineError(f"models.{spec.name}: an external model is not started by sparkstack")

    def base_url(self, spec: ModelSpec, port: int | None) -> str:
        assert spec.url is not None  # the schema requires url: for external
        return spec.url.rstrip("/").removesuffix("/v1")

    def upstream_model(self, spec: ModelSpec) -> str:
        return spec.model or spec.name

    def model_bytes(self, spec: ModelSpec) -> int:
        return 0

    def memory(
        self, facts: ModelFacts, spec: ModelSpec, machine: MachineProfile, free_at_start: int
    ) -> MemoryEstimate:
        return MemoryEstimate(0, 0, 0, 0, 0, 0, notes=["served elsewhere: uses no memory here"])
