"""``Telemetry``: what the gateway knows about the stack, gathered off the request
path. A background task samples the gateway's counters every second, the
engines' resident memory every 2 s (in a worker thread), and the engines' own
metrics every second while someone watches, every 15 s otherwise. The document
is built from those samples and cached until the next sample or event, so
polling it costs a cache lookup, and one JSON encode per sample or event."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from sparkstack.planner.plan import StackPlan
from sparkstack.supervisor.runtime import ModelRuntime, ModelState
from sparkstack.supervisor.watchdog import MemoryWatchdog
from sparkstack.telemetry.document import (
    MachineStatus,
    ModelTelemetry,
    NodeStatus,
    StatusDocument,
    WatchdogStatus,
)
from sparkstack.telemetry.engine_series import EngineFigures, parse_engine_text
from sparkstack.telemetry.events import EventLog
from sparkstack.telemetry.memory import host_available, measure_all
from sparkstack.telemetry.window import Buckets, ModelCounters, Sample, Window

PERIOD_S = 1.0
WATCHED_S = 30.0
IDLE_ENGINE_PERIOD_S = 15.0
MEMORY_PERIOD_S = 2.0
CACHE_S = 0.5
_SCRAPE_TIMEOUT = aiohttp.ClientTimeout(total=2)
_STATES = frozenset(state.value for state in ModelState)


@dataclass(frozen=True)
class GatewayCounters:
    """One model's cumulative gateway counters (read from the gateway's metrics)."""

    requests: int
    errors: int
    ttft: Buckets | None


GatewaySource = Callable[[], dict[str, GatewayCounters]]
NodeSource = Callable[[], list[NodeStatus]]
"""The cluster's nodes as last sampled (cluster.node_monitor, off the request path)."""
HeldBytes = Callable[[ModelRuntime], int]


class Telemetry:
    def __init__(
        self,
        models: dict[str, ModelRuntime],
        plan: StackPlan | None = None,
        held: HeldBytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.plan = plan
        self.held = held
        self.clock = clock
        self.events = EventLog()
        self.window = Window()
        self.watchdog: MemoryWatchdog | None = None
        self.gateway: GatewaySource = lambda: {}
        self.nodes: NodeSource = list
        self.engines: dict[str, EngineFigures] = {}
        self.measured: dict[str, int] = {}
        self.available: int | None = None
        self.started = clock()
        self._watched_until = 0.0
        self._last_engine_scrape = -1e9
        self._last_memory = -1e9
        self._cache: tuple[float, int, bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    # hooks for the supervisor ------------------------------------------------
    def state_changed(self, runtime: ModelRuntime) -> None:
        self.events.add(runtime.name, runtime.state.value, runtime.error)

    def event(self, runtime: ModelRuntime, event: str) -> None:
        if event not in _STATES:  # states arrive through state_changed
            self.events.add(runtime.name, event)

    # sampling ----------------------------------------------------------------
    def start(self, session: aiohttp.ClientSession) -> None:
        if self._task is None:
            # The counters as the sampler starts, so the first minute counts the
            # requests answered while its first full sample was being taken.
            self.window.add(Sample(at=self.clock(), models=self._counters()))
            self._task = asyncio.create_task(self._run(session))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def watched(self) -> None:
        """Someone looks (status, SSE, a Prometheus scrape): sample every second."""
        self._watched_until = self.clock() + WATCHED_S

    async def _run(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.sample(session)
            await asyncio.sleep(PERIOD_S)

    async def sample(self, session: aiohttp.ClientSession) -> None:
        now = self.clock()
        watched = now < self._watched_until
        if watched or now - self._last_engine_scrape >= IDLE_ENGINE_PERIOD_S:
            self._last_engine_scrape = now
            await self._scrape_engines(session)
        if now - self._last_memory >= MEMORY_PERIOD_S:
            self._last_memory = now
            pids = {n: rt.pid for n, rt in self.models.items() if rt.pid is not None}
            self.measured = await asyncio.to_thread(measure_all, pids)
            if self.watchdog is None:
                self.available = await asyncio.to_thread(host_available)
        self.window.add(Sample(at=self.clock(), models=self._counters()))
        self._cache = None

    async def _scrape_engines(self, session: aiohttp.ClientSession) -> None:
        targets = [
            rt
            for rt in self.models.values()
            if rt.state is ModelState.READY and rt.adapter.metrics_path and rt.base_url
        ]

        async def scrape(runtime: ModelRuntime) -> EngineFigures | None:
            assert runtime.adapter.metrics_path is not None
            headers = {"Authorization": f"Bearer {runtime.api_key}"} if runtime.api_key else None
            try:
                async with session.get(
                    runtime.base_url + runtime.adapter.metrics_path,
                    headers=headers,
                    timeout=_SCRAPE_TIMEOUT,
                ) as response:
                    if response.status != 200:
                        return None
                    return parse_engine_text(await response.text())
            except (aiohttp.ClientError, TimeoutError):
                return None

        found = await asyncio.gather(*(scrape(rt) for rt in targets))
        self.engines = {rt.name: f for rt, f in zip(targets, found, strict=True) if f is not None}

    def _counters(self) -> dict[str, ModelCounters]:
        gateway = self.gateway()
        out: dict[str, ModelCounters] = {}
        for name in self.models:
            counts = gateway.get(name)
            engine = self.engines.get(name, EngineFigures())
            out[name] = ModelCounters(
                requests=counts.requests if counts else 0,
                errors=counts.errors if counts else 0,
                ttft=engine.ttft or (counts.ttft if counts else None),
                itl=engine.itl,
                prompt_tokens=engine.prompt_tokens,
                generation_tokens=engine.generation_tokens,
            )
        return out

    # the document ------------------------------------------------------------
    def document_bytes(self) -> bytes:
        """The status document as JSON, rebuilt after each sample or event."""
        self.watched()
        seq = self.events.recent[-1].seq if self.events.recent else 0
        now = self.clock()
        cached = self._cache
        if cached is not None and cached[1] == seq and now - cached[0] < CACHE_S:
            return cached[2]
        body = self.document().model_dump_json().encode()
        self._cache = (now, seq, body)
        return body

    def document(self) -> StatusDocument:
        return StatusDocument(
            time=time.time(),
            uptime_s=round(self.clock() - self.started, 1),
            machine=self._machine(),
            models=[self._model(rt) for rt in self.models.values()],
            events=self.events.last(50),
            nodes=self.nodes(),
        )

    def _machine(self) -> MachineStatus:
        dog = self.watchdog
        available = dog.available if dog is not None and dog.available else self.available
        watchdog = WatchdogStatus(state="off")
        if dog is not None:
            watchdog = WatchdogStatus(
                state="holding" if dog.low else "ok",
                available_bytes=dog.available or None,
                floor_bytes=dog.floor,
                trips=dog.trips,
                holding=dog.supervisor.admitting,
            )
        machine = self.plan.machine if self.plan else None
        return MachineStatus(
            name=machine.name if machine else None,
            device=machine.device if machine else None,
            unified=machine.unified if machine else None,
            total_bytes=machine.total_bytes if machine else None,
            available_bytes=available,
            host_reserve_bytes=machine.reserve_bytes if machine else None,
            budget_bytes=machine.budget_bytes if machine else None,
            watchdog=watchdog,
        )

    def _planned(self, name: str) -> int | None:
        if self.plan is None:
            return None
        model = next((m for m in self.plan.models if m.name == name), None)
        return model.total_bytes if model else None

    def _model(self, rt: ModelRuntime) -> ModelTelemetry:
        minute = self.window.minute(rt.name)
        engine = self.engines.get(rt.name, EngineFigures())
        newest = self.window.samples[-1].models.get(rt.name) if self.window.samples else None
        measured = self.measured.get(rt.name) if rt.pid is not None else None
        loaded = rt.state not in (ModelState.STOPPED, ModelState.FAILED)
        return ModelTelemetry(
            name=rt.name,
            engine=rt.spec.engine,
            state=rt.state.value,
            policy=rt.spec.policy.value,
            aliases=list(rt.spec.aliases),
            runtime="process" if rt.adapter.managed else "external",
            image=rt.image,
            nodes=list(rt.spec.nodes),
            port=rt.port,
            pid=rt.pid,
            base_url=rt.base_url,
            error=rt.error,
            ready_seconds=rt.ready_seconds,
            planned_bytes=self._planned(rt.name),
            held_bytes=self.held(rt) if self.held else (measured or 0) if loaded else 0,
            measured_bytes=measured,
            rss_bytes=measured,
            kv_cache_usage=engine.kv_usage if rt.state is ModelState.READY else None,
            running=int(engine.running) if engine.running is not None else rt.inflight,
            waiting=int(engine.waiting or 0) + rt.waiting + rt.queued,
            prompt_tok_s=_round(minute.prompt_tok_s) if minute else None,
            generation_tok_s=_round(minute.generation_tok_s) if minute else None,
            ttft_p50_ms=minute.ttft_p50_ms if minute else None,
            ttft_p95_ms=minute.ttft_p95_ms if minute else None,
            itl_p50_ms=minute.itl_p50_ms if minute else None,
            itl_p95_ms=minute.itl_p95_ms if minute else None,
            requests_per_s=minute.requests_per_s if minute else 0.0,
            errors_last_minute=minute.errors if minute else 0,
            requests_total=newest.requests if newest else 0,
            errors_total=newest.errors if newest else 0,
            generation_history=self.window.generation_history(rt.name),
            last_events=self.events.last(5, rt.name),
        )

    # Prometheus --------------------------------------------------------------
    def prometheus_lines(self) -> list[str]:
        """Memory and state series for Grafana's memory picture."""
        out = [
            "# HELP sparkstack_model_memory_held_bytes Memory the plan says the model holds "
            "in its current state.",
            "# TYPE sparkstack_model_memory_held_bytes gauge",
        ]
        doc_models = [self._model(rt) for rt in self.models.values()]
        out += [
            f'sparkstack_model_memory_held_bytes{{model="{m.name}"}} {m.held_bytes}'
            for m in doc_models
        ]
        out.append("# TYPE sparkstack_model_memory_measured_bytes gauge")
        out += [
            f'sparkstack_model_memory_measured_bytes{{model="{m.name}"}} {m.measured_bytes}'
            for m in doc_models
            if m.measured_bytes is not None
        ]
        out.append("# TYPE sparkstack_model_state gauge")
        out += [
            f'sparkstack_model_state{{model="{m.name}",state="{state.value}"}} '
            f"{int(m.state == state.value)}"
            for m in doc_models
            for state in ModelState
        ]
        machine = self.plan.machine if self.plan else None
        if machine is not None:
            out.append("# TYPE sparkstack_memory_total_bytes gauge")
            out.append(f"sparkstack_memory_total_bytes {machine.total_bytes}")
            out.append("# TYPE sparkstack_memory_host_reserve_bytes gauge")
            out.append(f"sparkstack_memory_host_reserve_bytes {machine.reserve_bytes}")
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
