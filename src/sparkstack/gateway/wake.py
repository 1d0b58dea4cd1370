"""Waiting (bounded) for a stopped on-demand or failed model to start before its
request is forwarded. A streaming client gets SSE comments (or, with
``gateway.wait_progress: events``, progress chunks) meanwhile, so its stream
is already open when the answer comes; a failed wake ends that stream with an
in-band error. A refused wait carries ``Retry-After`` (wait_progress.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sparkstack.errors import GatewayError, SparkstackError
from sparkstack.gateway.context import EVENT_STREAM, Downstream, RequestContext
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import sse_error_event
from sparkstack.gateway.wait_progress import (
    can_send_events,
    comment,
    progress_event,
    retry_after,
)
from sparkstack.stack.schema import GatewaySpec
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

Waker = Callable[[str], Awaitable[ModelRuntime]]


def check_ready(runtime: ModelRuntime) -> None:
    if runtime.state is ModelState.READY:
        return
    detail = f": {runtime.error}" if runtime.error else ""
    raise GatewayError(
        f"The model {runtime.name!r} is {runtime.state.value}{detail}. "
        "Retry when GET /v1/models shows it ready.",
        status=503,
        error_type="service_unavailable",
        code=f"model_{runtime.state.value}",
        retry_after=None if runtime.failed else retry_after(runtime),
    )


class WakeWaiter:
    def __init__(self, spec: GatewaySpec, metrics: GatewayMetrics, waker: Waker | None) -> None:
        self.spec = spec
        self.metrics = metrics
        self.waker = waker
        self.queues: dict[str, list[object]] = {}
        """Per model, the requests waiting for it to load, in arrival order."""

    async def wait(self, ctx: RequestContext, down: Downstream, runtime: ModelRuntime) -> bool:
        """Return once the model is ready (False), or True when the stream opened
        meanwhile already carries the wake's error; raise a 503 otherwise."""
        if (
            self.waker is None
            or not runtime.adapter.managed
            or runtime.state is ModelState.STOPPING
        ):
            check_ready(runtime)
        if runtime.waiting >= self.spec.max_waiting:
            raise GatewayError(
                f"{runtime.waiting} requests already wait for model {runtime.name!r} to "
                "load (gateway.max_waiting); retry shortly.",
                status=503, error_type="service_unavailable", code="model_load_queue_full",
                retry_after=retry_after(runtime),
            )  # fmt: skip
        assert self.waker is not None
        streaming = bool(ctx.payload.get("stream"))
        name = runtime.name
        events = streaming and self.spec.wait_progress == "events" and can_send_events(ctx.path)
        runtime.waiting += 1
        self.metrics.queued[name] += 1
        me = object()
        queue = self.queues.setdefault(name, [])
        queue.append(me)
        wake = asyncio.ensure_future(self.waker(name))
        began = time.monotonic()
        try:
            if events:  # at once: the client learns its place before the first interval
                await self._tell(ctx, down, runtime, events, queue.index(me) + 1, 0.0)
            while not wake.done():
                left = self.spec.wake_wait - (time.monotonic() - began)
                if left <= 0:
                    raise GatewayError(
                        f"The model {name!r} is still loading after {self.spec.wake_wait:g}s "
                        f"(state: {runtime.state.value}); retry later.",
                        status=503, error_type="service_unavailable", code="model_loading",
                        retry_after=retry_after(runtime),
                    )  # fmt: skip
                step = min(left, self.spec.keepalive_interval) if streaming else left
                await asyncio.wait([wake], timeout=step)
                if streaming and not wake.done():
                    waited = time.monotonic() - began
                    await self._tell(ctx, down, runtime, events, queue.index(me) + 1, waited)
            _outcome(wake, name)
        except GatewayError as exc:
            if not down.started:
                raise
            await down.write(sse_error_event(exc))
            await down.end()
            return True
        finally:
            runtime.waiting -= 1
            self.metrics.queued[name] -= 1
            queue.remove(me)
            if not wake.done():
                wake.cancel()  # only this waiter; the start itself is shielded
        return False

    async def _tell(
        self, ctx: RequestContext, down: Downstream, runtime: ModelRuntime, events: bool,
        position: int, waited: float,
    ) -> None:  # fmt: skip
        """One progress event or SSE comment to a streaming client that waits."""
        if not down.started:
            await down.start_stream(200, EVENT_STREAM)
        if events:
            await down.write(progress_event(ctx, runtime, position, runtime.waiting, waited))
        else:
            await down.write(comment(runtime, waited))


def _outcome(wake: asyncio.Future[ModelRuntime], name: str) -> None:
    """The finished wake's failure as the request's 503."""
    try:
        wake.result()
    except SparkstackError as exc:
        raise GatewayError(
            f"The model {name!r} could not be started: {exc}",
            status=503,
            error_type="service_unavailable",
            code="model_start_failed",
        ) from exc
