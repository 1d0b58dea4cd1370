"""What the gateway reports about models: ``/v1/models`` entries and the
per-model status rows behind ``/admin/status`` and ``sparkstack status``."""

from __future__ import annotations

import time

import psutil
from pydantic import BaseModel

from sparkstack.supervisor.runtime import ModelRuntime

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
    runtime: str = "native"
    image: str | None = None


def tree_rss(pid: int | None) -> int | None:
    """Resident memory of a process and all its descendants."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


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
        runtime="container" if runtime.image else "native",
        image=runtime.image,
    )


def models_list(models: dict[str, ModelRuntime]) -> list[dict[str, object]]:
    """The ``/v1/models`` entries: every model and alias, with its state."""
    data: list[dict[str, object]] = []
    for runtime in models.values():
        for name in runtime.spec.names:
            entry: dict[str, object] = {
                "id": name,
                "object": "model",
                "created": _CREATED,
                "owned_by": "sparkstack",
                "engine": runtime.spec.engine,
                "state": runtime.state.value,
            }
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
