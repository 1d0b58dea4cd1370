"""What the gateway reports about models: ``/v1/models`` entries and the
per-model status rows behind ``/admin/status`` and ``sparkstack status``."""

from __future__ import annotations

import time

from pydantic import BaseModel

from sparkstack.gateway.metrics import BUCKETS, GatewayMetrics
from sparkstack.supervisor.process import tree_rss
from sparkstack.supervisor.runtime import ModelRuntime, ModelState
from sparkstack.telemetry.hub import GatewayCounters
from sparkstack.telemetry.window import Buckets

_CREATED = int(time.time())


class ModelStatus(BaseModel):
    name: str
    engine: str
    state: str
    policy: str
    aliases: list[str]
    port: int | None
    pid: int | None
    rss_bytes: int | None
    base_url: str
    error: str | None
    ready_seconds: float | None
    nodes: list[str] = []
    """Cluster nodes the model spans (empty: this host alone)."""
    runtime: str = "native"
    image: str | None = None


def model_status(runtime: ModelRuntime) -> ModelStatus:
    return ModelStatus(
        name=runtime.name,
        engine=runtime.spec.engine,
        state=runtime.state.value,
        policy=runtime.spec.policy.value,
        aliases=list(runtime.spec.aliases),
        port=runtime.port,
        pid=runtime.pid,
        rss_bytes=tree_rss(runtime.pid),
        base_url=runtime.base_url,
        error=runtime.error,
        ready_seconds=runtime.ready_seconds,
        nodes=list(runtime.spec.nodes),
        runtime="container" if runtime.image else "native",
        image=runtime.image,
    )


def models_list(
    models: dict[str, ModelRuntime], measured: dict[str, int] | None = None
) -> list[dict[str, object]]:
    """The ``/v1/models`` entries: every model and alias, with the OpenAI fields
    first, then what a client needs to decide whether to wait: its state, planned
    and measured memory (``measured``: the telemetry's last sample of each running
    engine's resident bytes), how long its starts take, and a running start's age."""
    data: list[dict[str, object]] = []
    now = time.monotonic()
    for runtime in models.values():
        loading = runtime.load_started > 0 and runtime.state is ModelState.STARTING
        for name in runtime.spec.names:
            entry: dict[str, object] = {
                "id": name,
                "object": "model",
                "created": _CREATED,
                "owned_by": "sparkstack",
                "engine": runtime.spec.engine,
                "state": runtime.state.value,
                "policy": runtime.spec.policy.value,
                "planned_bytes": runtime.planned_bytes,
                "measured_bytes": (measured or {}).get(runtime.name) if runtime.pid else None,
                "expected_load_seconds": runtime.expected_load_seconds,
                "last_load_seconds": runtime.last_load_seconds,
            }
            if loading:
                entry["loading_seconds"] = round(now - runtime.load_started, 1)
            if runtime.error:
                entry["error"] = runtime.error
            if name != runtime.name:
                entry["alias_of"] = runtime.name
            if runtime.image:
                entry["runtime"], entry["image"] = "container", runtime.image
            if runtime.spec.context:
                entry["max_model_len"] = runtime.spec.context
            if runtime.decode_ceiling_tok_s:
                entry["decode_ceiling_tok_s"] = runtime.decode_ceiling_tok_s
            data.append(entry)
    return data


def gateway_counters(metrics: GatewayMetrics) -> dict[str, GatewayCounters]:
    """The gateway's cumulative counters per model, for the telemetry sampler."""
    requests: dict[str, int] = {}
    for labels, count in metrics.requests.items():
        model = labels[0][1]
        requests[model] = requests.get(model, 0) + count
    errors: dict[str, int] = {}
    for labels, count in metrics.errors.items():
        model = labels[0][1]
        errors[model] = errors.get(model, 0) + count
    bounds = (*BUCKETS, float("inf"))
    return {
        model: GatewayCounters(
            requests=requests.get(model, 0),
            errors=errors.get(model, 0),
            ttft=Buckets(bounds, tuple(hist.counts)) if (hist := metrics.ttft.get(model)) else None,
        )
        for model in {*requests, *errors, *metrics.ttft}
    }
