"""Hot reload: re-read the stack file of a running stack and carry the change
out without touching what did not change.

A file that no longer loads, plans or fits is rejected and nothing changes.
Otherwise, while no wake may run (the supervisor's room lock): removed models
leave the routing table (their name answers 404), changed ones get a fresh,
stopped runtime under their name (new requests wait for it), and the old
runtimes drain (their in-flight requests finish, bounded by
``gateway.reload_drain_timeout``) and stop. Then the changed and added models
that should run (always on, or the baseline) start through the usual wake, which
makes room and shares the start with waiting requests. Unchanged models are never
touched: same runtime, same engine process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sparkstack.errors import SparkstackError
from sparkstack.planner.plan import StackPlan
from sparkstack.stack.diff import StackDiff, diff_stacks
from sparkstack.stack.schema import Policy, Stack
from sparkstack.supervisor.runtime import ModelRuntime
from sparkstack.supervisor.supervisor import Supervisor, new_runtime

log = logging.getLogger("sparkstack.reload")
GIB = 2**30
STACK_EVENT_SUBJECT = "stack"
"""The ``model`` field of stack-wide events (reload_applied, reload_rejected)."""

StackSource = Callable[[], Stack]
"""Reads and validates the stack file again (raises a SparkstackError)."""
Planner = Callable[[Stack], StackPlan]
ModelsChanged = Callable[[], None]
"""Called once the model set changed (the gateway rebuilds its routing table)."""
Note = Callable[[str, str, str | None], None]
"""(model or "stack", event, detail): lifecycle events for /admin/events and top."""


@dataclass
class ReloadResult:
    applied: bool
    trigger: str
    reason: str | None = None
    """Why the file was rejected (None when applied)."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    """Changed or added models started by the reload (ready now)."""
    unchanged: list[str] = field(default_factory=list)
    kept_settings: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    """Models stopped with requests still in flight after the drain timeout."""
    start_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.applied:
            return f"reload rejected, the running stack is unchanged: {self.reason}"
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
                ("started", self.restarted),
                ("stopped mid-request after the drain timeout", self.forced),
            )
            if names
        ]
        text = "; ".join(parts) or "no model changed"
        if self.kept_settings:
            text += (
                f"; kept the running {', '.join(self.kept_settings)} (they apply at the "
                "next `sparkstack up`)"
            )
        if self.start_errors:
            text += f"; could not start: {'; '.join(self.start_errors)}"
        return f"reload applied in {self.seconds:.1f}s: {text}"

    def as_json(self) -> dict[str, object]:
        body = asdict(self)
        body["summary"] = self.summary()
        return body


class Reloader:
    def __init__(
        self,
        supervisor: Supervisor,
        source: StackSource | None,
        planner: Planner | None,
        on_models: ModelsChanged,
        note: Note,
    ) -> None:
        self.supervisor = supervisor
        self.source = source
        self.planner = planner
        self.on_models = on_models
        self.note = note
        self._lock = asyncio.Lock()
        self._requested = asyncio.Event()
        self._trigger = ""

    def request(self, trigger: str) -> None:
        """Ask ``run`` for a reload (a signal handler, the file watch); requests that
        arrive during one reload make one more after it."""
        self._trigger = trigger
        self._requested.set()

    async def run(self) -> None:
        """Carry out requested reloads, one after another, until cancelled."""
        while True:
            await self._requested.wait()
            self._requested.clear()
            await self.reload(self._trigger)

    async def reload(self, trigger: str) -> ReloadResult:
        """Re-read the stack file and apply it, one reload at a time."""
        async with self._lock:
            began = time.monotonic()
            result = await self._reload(trigger)
            result.seconds = time.monotonic() - began
        if result.applied:
            log.info("%s (%s)", result.summary(), trigger)
            self.note(STACK_EVENT_SUBJECT, "reload_applied", result.summary())
        else:
            log.error("%s (%s)", result.summary(), trigger)
            self.note(STACK_EVENT_SUBJECT, "reload_rejected", result.reason)
        return result

    async def _reload(self, trigger: str) -> ReloadResult:
        if self.source is None:
            return ReloadResult(
                False, trigger, "this stack was started without a stack file (the demo "
                "stack); there is no file to read again",
            )  # fmt: skip
        try:
            new = await asyncio.to_thread(self.source)
        except SparkstackError as exc:
            return ReloadResult(False, trigger, str(exc))
        old = self.supervisor.stack
        diff = diff_stacks(old, new)
        if diff.blocked:
            return ReloadResult(False, trigger, diff.blocked)
        plan: StackPlan | None = None
        if self.planner is not None and self.supervisor.plan is not None:
            try:
                plan = await asyncio.to_thread(self.planner, new)
            except SparkstackError as exc:
                return ReloadResult(False, trigger, f"the new stack cannot be planned: {exc}")
            if not plan.fits:
                return ReloadResult(False, trigger, does_not_fit(plan))
        # the running gateway keeps its settings but the reload's own timeout
        drain_timeout = new.gateway.reload_drain_timeout
        new = new.model_copy(update={"gateway": old.gateway})
        result = ReloadResult(
            True, trigger, added=diff.added, removed=diff.removed, changed=diff.changed,
            unchanged=diff.unchanged, kept_settings=diff.kept_settings,
        )  # fmt: skip
        await self._apply(new, plan, diff, drain_timeout, result)
        return result

    async def _apply(
        self,
        new: Stack,
        plan: StackPlan | None,
        diff: StackDiff,
        drain_timeout: float,
        result: ReloadResult,
    ) -> None:
        sup = self.supervisor
        async with sup.room:
            old = {name: sup.models[name] for name in [*diff.removed, *diff.changed]}
            fresh = {
                name: new_runtime(new, plan, name, sup.load_times)
                for name in [*diff.added, *diff.changed]
            }
            sup.replace(new, plan, fresh, diff.removed)
            self.on_models()
            for name in diff.removed:
                self.note(name, "reload_removed", None)
            for name in diff.added:
                self.note(name, "reload_added", None)
            running = [rt for rt in old.values() if rt.process is not None]
            result.forced = await drain(running, drain_timeout)
            for name in result.forced:
                log.warning("%s still had requests in flight after %.0fs; stopping it anyway",
                            name, drain_timeout)  # fmt: skip
            await asyncio.gather(*(sup.lifecycle.stop(rt) for rt in running))
        for name in diff.changed:
            self.note(name, "reload_changed", None)
        for name in to_start(new, plan, [*diff.changed, *diff.added]):
            try:
                await sup.wake(name)
            except SparkstackError as exc:
                result.start_errors.append(f"{name}: {exc}")
                continue
            result.restarted.append(name)
            self.note(name, "reload_restarted" if name in diff.changed else "reload_started", None)


def to_start(stack: Stack, plan: StackPlan | None, names: list[str]) -> list[str]:
    """Of ``names``, those a stack starts by itself: always-on models (in the plan's
    start order, largest first), then the baseline model."""
    order = plan.start_order if plan is not None else list(stack.models)
    always = [
        name for name in order if name in names and stack.models[name].policy is Policy.ALWAYS_ON
    ]
    baseline = [name for name in names if stack.models[name].default_when_idle]
    return [*always, *baseline]


async def drain(runtimes: list[ModelRuntime], within: float, period: float = 0.05) -> list[str]:
    """Wait until none of ``runtimes`` serves a request (requests waiting for a wake
    are not served by the engine); the names still busy after ``within`` seconds."""
    deadline = time.monotonic() + within
    busy = [rt for rt in runtimes if rt.inflight - rt.waiting > 0]
    while busy and time.monotonic() < deadline:
        await asyncio.sleep(period)
        busy = [rt for rt in busy if rt.inflight - rt.waiting > 0]
    return [rt.name for rt in busy]


def does_not_fit(plan: StackPlan) -> str:
    machine = plan.machine
    return (
        f"the new stack does not fit: at its peak it needs {plan.peak_bytes / GIB:.2f} GiB, "
        f"{plan.overflow_bytes / GIB:.2f} GiB more than the {machine.budget_bytes / GIB:.2f} "
        "GiB budget (`sparkstack plan FILE` shows where it goes); make a model smaller or "
        "on_demand, or remove one"
    )
