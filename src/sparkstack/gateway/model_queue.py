"""Each model's request slots and the queue in front of them.

A model serves at most ``max_inflight`` requests at once (its own setting, else
an equal share of ``gateway.max_inflight``). A request beyond that waits in the
model's queue: highest priority first, first come first served within one
priority. A freed slot goes straight to the head of the queue. Beyond
``max_queue`` waiting requests a new one gets a 429 with ``Retry-After`` (from
the model's recent service times); one that waited ``queue_timeout`` gets a 503.
A waiting client that disconnects leaves the queue (its task is cancelled).

While the supervisor drains the model (``ModelRuntime.draining``, before it is
put away) no slot is handed out: new requests wait here until the drain ends.

The fast path (a free slot, no drain) is two comparisons and an increment; the
priority is only worked out for a request that has to wait. Queues are per
model, so a hung model fills only its own queue."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

from sparkstack.errors import GatewayError
from sparkstack.gateway.keys import KeyRecord
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.supervisor.runtime import ModelRuntime

PRIORITY_HEADER = "X-Sparkstack-Priority"
PRIORITY_RANGE = (-1000, 1000)
_SMOOTHING = 0.2
"""Weight of the newest service time in the running average behind Retry-After."""


def model_limits(global_limit: int, own: dict[str, int | None]) -> dict[str, int]:
    """Each model's in-flight cap: its own ``max_inflight``, else an equal share of the
    gateway's (at least 1), so one model can never hold every slot."""
    share = max(1, global_limit // max(1, len(own)))
    return {name: limit or share for name, limit in own.items()}


def parse_priority(header: str) -> int:
    """The value of the priority header, or a 400 that says what it takes."""
    low, high = PRIORITY_RANGE
    try:
        value = int(header.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise GatewayError(
            f"{PRIORITY_HEADER} {header[:40]!r} is not an integer from {low} to {high}.",
            status=400, error_type="invalid_request_error", code="invalid_header",
        )  # fmt: skip
    return value


def request_priority(key: KeyRecord | None, header: str | None) -> int:
    """A request's queue priority: its key's (0 without keys), or lower when the
    request's header asks for lower; a header above the key's is held to the key's."""
    ceiling = key.priority if key is not None else None
    if header is None:
        return ceiling or 0
    asked = parse_priority(header)
    return asked if ceiling is None else min(asked, ceiling)


@dataclass(order=True, slots=True)
class _Waiter:
    rank: tuple[int, int]
    """(-priority, arrival number): the heap's order."""
    future: asyncio.Future[None] = field(compare=False)


class ModelQueue:
    """One model's slots and waiting requests (one event loop: no locks)."""

    def __init__(self, runtime: ModelRuntime, limit: int, metrics: GatewayMetrics) -> None:
        self.runtime = runtime
        self.name = runtime.name
        self.limit = limit
        self.max_queue = runtime.spec.max_queue
        self.timeout = runtime.spec.queue_timeout
        self.metrics = metrics
        self.running = 0
        """Slots taken (requests past the queue, until they end)."""
        self.queued = 0
        """Live waiters (the heap may also hold ones that left, dropped lazily)."""
        self.service = 0.0
        """Running average of recent service times (seconds), for Retry-After."""
        self._heap: list[_Waiter] = []
        self._arrivals = itertools.count()
        runtime.resume_listeners.append(self.resume)

    def free(self) -> bool:
        """Whether ``take`` would succeed now."""
        return self.running < self.limit and not self.runtime.draining

    def take(self) -> bool:
        """The fast path: a free slot taken at once, or False (then ``wait``)."""
        if self.running < self.limit and not self.runtime.draining:
            self.running += 1
            return True
        return False

    async def wait(self, priority: int) -> float:
        """Queue for a slot; return the seconds waited once it is this request's.
        Raises the 429 (queue full) or 503 (waited too long); a cancelled wait
        (the client went away) leaves the queue."""
        if self.queued >= self.max_queue:
            raise self.full()
        began = time.monotonic()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Waiter((-priority, next(self._arrivals)), future))
        self._count(+1)
        try:
            done, _ = await asyncio.wait((future,), timeout=self.timeout or None)
        except asyncio.CancelledError:
            self._leave(future)
            raise
        if not done:
            self._leave(future)
            raise GatewayError(
                f"The request waited {self.timeout:g}s in the queue of model {self.name!r} "
                f"(models.{self.name}.queue_timeout) behind {self.queued} others and "
                f"{self.running} in flight; retry later.",
                status=503, error_type="server_overloaded", code="model_queue_timeout",
                retry_after=self.retry_after(),
            )  # fmt: skip
        return time.monotonic() - began

    def release(self, service_seconds: float) -> None:
        """A request that held a slot ended: hand the slot to the next waiter."""
        self.service = (
            service_seconds if not self.service
            else self.service + _SMOOTHING * (service_seconds - self.service)
        )  # fmt: skip
        self._hand_on()

    def resume(self) -> None:
        """A drain ended: hand out every free slot to waiters."""
        while self.running < self.limit and self._pop_to_slot():
            pass

    def retry_after(self) -> int:
        """Seconds until a new request would likely find room: the queue ahead of it
        served ``limit`` at a time at the recent service time; at least 1."""
        rounds = (self.queued + 1) / max(1, self.limit)
        return max(1, math.ceil(rounds * self.service))

    def full(self) -> GatewayError:
        return GatewayError(
            f"The model {self.name!r} has {self.running} requests in flight "
            f"(models.{self.name}.max_inflight) and {self.queued} queued, its queue's limit "
            f"(models.{self.name}.max_queue); retry after the Retry-After seconds.",
            status=429, error_type="requests", code="model_queue_full",
            retry_after=self.retry_after(),
        )  # fmt: skip

    # -- inner workings ------------------------------------------------------------

    def _hand_on(self) -> None:
        if self.runtime.draining or not self._pop_to_slot(handing=True):
            self.running -= 1

    def _pop_to_slot(self, handing: bool = False) -> bool:
        """Give a slot to the best live waiter, if any. ``handing``: the slot is a
        released one (already counted in ``running``)."""
        if self.runtime.draining:
            return False
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if not waiter.future.done():
                waiter.future.set_result(None)
                self._count(-1)
                if not handing:
                    self.running += 1
                return True
        return False

    def _leave(self, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled():
            self._hand_on()  # a slot came just as it left: pass it on
            return
        future.cancel()
        self._count(-1)
        if len(self._heap) > 2 * self.queued + 16:
            self._heap = [w for w in self._heap if not w.future.done()]
            heapq.heapify(self._heap)

    def _count(self, delta: int) -> None:
        self.queued += delta
        self.runtime.queued += delta
        self.metrics.queued[self.name] += delta


class ModelQueues:
    """Every model's queue, made for the models at start; a model added later, or
    whose runtime was replaced (a reload), gets a fresh queue on its first request."""

    def __init__(
        self, models: dict[str, ModelRuntime], global_limit: int, metrics: GatewayMetrics
    ) -> None:
        self.models = models
        self.global_limit = global_limit
        self.metrics = metrics
        self._queues: dict[str, ModelQueue] = {}
        for runtime in models.values():
            self._make(runtime)

    def follow(self, models: dict[str, ModelRuntime]) -> None:
        """After a reload: the models now served; each kept queue gets its share of
        the new model set, removed models' queues go."""
        self.models = models
        for name in [n for n in self._queues if n not in models]:
            del self._queues[name]
        own = {name: rt.spec.max_inflight for name, rt in models.items()}
        limits = model_limits(self.global_limit, own)
        for name, queue in self._queues.items():
            queue.limit = limits[name]

    def get(self, runtime: ModelRuntime) -> ModelQueue:
        queue = self._queues.get(runtime.name)
        if queue is None or queue.runtime is not runtime:
            queue = self._make(runtime)
        return queue

    def _make(self, runtime: ModelRuntime) -> ModelQueue:
        own = {name: rt.spec.max_inflight for name, rt in self.models.items()}
        own[runtime.name] = runtime.spec.max_inflight
        limit = model_limits(self.global_limit, own)[runtime.name]
        queue = self._queues[runtime.name] = ModelQueue(runtime, limit, self.metrics)
        return queue
