"""Which model serves a request: the ``model`` field matched against every
model name and alias of the stack (rebuilt by ``refresh`` after a reload)."""

from __future__ import annotations

from sparkstack.errors import GatewayError
from sparkstack.supervisor.runtime import ModelRuntime


class Router:
    def __init__(self, models: dict[str, ModelRuntime]) -> None:
        self.models = models
        self._by_name: dict[str, ModelRuntime] = {}
        self.refresh()

    def refresh(self) -> None:
        """Route to the models as they are now (one assignment: a request resolves
        against the old table or the new one, never half of each)."""
        by_name: dict[str, ModelRuntime] = {}
        for runtime in self.models.values():
            for name in runtime.spec.names:
                by_name[name] = runtime
        self._by_name = by_name

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def resolve(self, model: str) -> ModelRuntime:
        runtime = self._by_name.get(model)
        if runtime is None:
            raise GatewayError(
                f"The model {model!r} does not exist here. Available models: "
                f"{', '.join(self.names)}.",
                status=404,
                error_type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return runtime
