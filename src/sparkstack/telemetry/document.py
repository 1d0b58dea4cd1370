"""The status document of ``GET /admin/status`` (schema ``sparkstack.status/v1``;
fields are only added): the machine's memory and watchdog, each model's state,
memory, load and last-minute figures, the recent events, and with ``cluster:``
each node's state, memory and models. ``sparkstack top``
and the dashboard read exactly this."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sparkstack.telemetry.events import Event

SCHEMA = "sparkstack.status/v1"


class WatchdogStatus(BaseModel):
    state: str = Field(description="ok, holding (below the host reserve: no starts), or off.")
    available_bytes: int | None = None
    floor_bytes: int | None = None
    trips: int = 0
    holding: str | None = None


class MachineStatus(BaseModel):
    name: str | None = None
    device: str | None = None
    unified: bool | None = None
    total_bytes: int | None = None
    available_bytes: int | None = None
    host_reserve_bytes: int | None = None
    budget_bytes: int | None = None
    watchdog: WatchdogStatus


class ModelTelemetry(BaseModel):
    name: str
    engine: str
    state: str
    policy: str
    aliases: list[str]
    runtime: str = Field(description="process (managed by the supervisor) or external.")
    container: str | None = None
    image: str | None = Field(default=None, description="The container image, when in one.")
    nodes: list[str] = Field(
        default_factory=list, description="Cluster nodes it spans (empty: this host alone)."
    )
    port: int | None
    pid: int | None
    base_url: str
    error: str | None
    ready_seconds: float | None
    planned_bytes: int | None = Field(description="The plan's resident total.")
    held_bytes: int = Field(description="What the plan says it holds in its state now.")
    measured_bytes: int | None = Field(description="RSS of the engine's process tree.")
    rss_bytes: int | None = Field(description="Same as measured_bytes (older readers).")
    kv_cache_usage: float | None = Field(description="0..1, from the engine's metrics.")
    running: int
    waiting: int
    prompt_tok_s: float | None
    generation_tok_s: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    requests_per_s: float
    errors_last_minute: int
    requests_total: int
    errors_total: int
    generation_history: list[float | None] = Field(
        description="Generation tokens/s, one value per second, oldest first."
    )
    last_events: list[Event]


class NodeStatus(BaseModel):
    """One node of the stack's Ray cluster (a stack with ``cluster:``)."""

    name: str
    address: str
    head: bool = False
    state: str = Field(
        description="alive, lost (its raylet stopped answering or Ray marked it dead), "
        "absent (never joined), or unknown (no sample from Ray yet)."
    )
    cpus: float | None = Field(default=None, description="CPUs it offers Ray.")
    gpus: float | None = Field(default=None, description="GPUs it offers Ray.")
    memory_total_bytes: int | None = Field(
        default=None, description="The node's memory, read on the node by a Ray task."
    )
    memory_available_bytes: int | None = Field(
        default=None, description="Its available memory at the last sample."
    )
    ray_memory_bytes: int | None = Field(
        default=None, description="Ray's logical 'memory' resource on the node."
    )
    models: list[str] = Field(default_factory=list, description="Models placed on it.")
    sampled_at: float | None = Field(default=None, description="When Ray last reported it.")
    detail: str | None = Field(default=None, description="Why it is lost or absent.")


class StatusDocument(BaseModel):
    schema_version: str = SCHEMA
    time: float
    uptime_s: float
    machine: MachineStatus
    models: list[ModelTelemetry]
    events: list[Event]
    nodes: list[NodeStatus] = Field(
        default_factory=list, description="Cluster nodes (empty without cluster:)."
    )
