"""The live state of one configured model, shared by the supervisor (which
changes it) and the gateway (which reads it to route)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sparkstack.engines.base import EngineAdapter
from sparkstack.stack.schema import ModelSpec
from sparkstack.supervisor.engine_process import EngineProcess


class ModelState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SLEEPING = "sleeping"
    FAILED = "failed"


@dataclass
class ModelRuntime:
    spec: ModelSpec
    adapter: EngineAdapter
    state: ModelState = ModelState.STOPPED
    port: int | None = None
    process: EngineProcess | None = None
    error: str | None = None
    base_url: str = ""
    ready_seconds: float | None = None
    inflight: int = 0
    """Requests the gateway is serving with this model now."""
    waiting: int = 0
    """Requests waiting for this model to wake."""
    queued: int = 0
    """Requests queued in the gateway for one of this model's slots (its max_inflight)."""
    draining: bool = False
    """Set while the model is drained before it is put away: the gateway holds new
    requests back (queued) until the drain ends (supervisor/drain.py)."""
    resume_listeners: list[Callable[[], None]] = field(default_factory=list)
    """Called when a drain ends, so requests held back meanwhile go on."""
    last_used: float = 0.0
    """time.monotonic() of the last request's end (or of becoming ready)."""
    ready_at: float = 0.0
    restarts: int = 0
    """Restarts in a row after crashes (reset once it stays up)."""
    sleep_level: int | None = None
    abort_reason: str | None = None
    """Set when the supervisor kills a start on purpose (e.g. "memory spike")."""
    last_byte: float = 0.0
    """time.monotonic() of the last byte the gateway relayed from this engine."""
    busy_since: float = 0.0
    """time.monotonic() when the in-flight count last rose from zero."""
    hung_reason: str | None = None
    """Set when the liveness check found the engine hung and killed it."""
    decode_ceiling_tok_s: float | None = None
    """The planner's single-stream decode ceiling (memory bandwidth / bytes per token)."""
    image: str | None = None
    """The container image it runs in (None for a native process)."""
    planned_bytes: int | None = None
    """The plan's resident total for this model (None without a plan)."""
    expected_load_seconds: float | None = None
    """How long a start is expected to take, learned from past starts (load_times.py)."""
    last_load_seconds: float | None = None
    """How long its last start took (launch until ready, warm-up included)."""
    load_started: float = 0.0
    """time.monotonic() when the start under way began (0: none under way)."""
    upstream_model: str = field(init=False)
    api_key: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.upstream_model = self.adapter.upstream_model(self.spec)
        self.api_key = self.adapter.api_key(self.spec)
        if not self.adapter.managed:
            self.base_url = self.adapter.base_url(self.spec, None)

    @property
    def failed(self) -> bool:
        return self.state is ModelState.FAILED

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None
