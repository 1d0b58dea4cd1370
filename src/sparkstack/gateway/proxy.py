"""Forwarding a request to the engine that serves the requested model, step by
step over one ``RequestContext``: check the body's type (guard.py), authorize
the key (auth.py), read the model from the body (payload.py), check the key may
use it, admit it under the limits (limits.py), take one of the model's slots or
queue for one (model_queue.py), wait for the model to wake
(wake.py), relay to the engine (relay.py). Errors before a stream starts are
OpenAI-shaped JSON answers; after, in-band SSE events.

``Forwarder.start`` is the lean server's entry (fastserver.py): everything up to
the first wait runs at once in the client parser's callback, and the common
case (a ready engine, a free slot) never waits at all — its answer is relayed
from the engine's callbacks (direct_relay.py). ``Forwarder.serve`` awaits the
same steps; ``Forwarder.handle`` is its aiohttp route handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.access_log import AccessLog
from sparkstack.gateway.auth import Authorizer
from sparkstack.gateway.context import Downstream, RequestContext
from sparkstack.gateway.direct_relay import DirectRelay
from sparkstack.gateway.fastanswer import Answer
from sparkstack.gateway.guard import check_content_type, check_duplicates
from sparkstack.gateway.keys import KeyRecord
from sparkstack.gateway.limits import Limiter
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.model_queue import (
    PRIORITY_HEADER,
    ModelQueue,
    ModelQueues,
    request_priority,
)
from sparkstack.gateway.openai_errors import sse_error_event, too_large
from sparkstack.gateway.payload import parse_payload
from sparkstack.gateway.relay import Relay
from sparkstack.gateway.request_id import accept_request_id
from sparkstack.gateway.request_target import check_target
from sparkstack.gateway.routing import Router
from sparkstack.gateway.wake import Waker, WakeWaiter
from sparkstack.stack.schema import GatewaySpec
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(slots=True)
class Admitted:
    """A request past its checks: who sent it, where it goes, whose queue it is in."""

    key: KeyRecord | None
    runtime: ModelRuntime
    path: str
    """The engine's path for the route."""
    queue: ModelQueue


class Forwarder:
    def __init__(
        self,
        router: Router,
        session: aiohttp.ClientSession,
        auth: Authorizer,
        limiter: Limiter,
        metrics: GatewayMetrics,
        spec: GatewaySpec,
        waker: Waker | None = None,
        queues: ModelQueues | None = None,
        access: AccessLog | None = None,
    ) -> None:
        self.access = access
        self.router = router
        self.auth = auth
        self.limiter = limiter
        self.queues = queues or ModelQueues(router.models, spec.max_inflight, metrics)
        self.metrics = metrics
        self.spec = spec
        self.max_body = int(spec.max_body_mib * 2**20)
        self.waiter = WakeWaiter(spec, metrics, waker)
        self.relay = Relay(session, metrics, spec)
        self.pool = self.relay.pool

    async def serve(self, ctx: RequestContext, down: Downstream) -> None:
        """Answer one request; never raises a GatewayError."""
        rest = self.start(ctx, down)
        if isinstance(rest, Coroutine):
            await rest

    def start(
        self, ctx: RequestContext, down: Downstream, then: Callable[[], None] | None = None
    ) -> Coroutine[Any, Any, None] | DirectRelay | None:
        """Begin answering one request, up to its first wait. None: refused at
        once. A ``DirectRelay`` (only with ``then``, from the lean server): relayed
        from the engine connection's callbacks, ``then`` called when it is done.
        Otherwise the coroutine that answers the rest (a queue, a wake, awaited
        relaying)."""
        ctx.request_id = down.request_id = accept_request_id(ctx.request_id)
        try:
            admitted = self._admit(ctx)
            runtime = admitted.runtime
            direct = (
                then is not None
                and isinstance(down, Answer)
                and runtime.state is ModelState.READY
                and self.relay.can_start_direct(ctx, runtime)
                and admitted.queue.free()
            )
            if direct:
                self.limiter.admit(admitted.key)
        except GatewayError as exc:
            ctx.bytes_out = down.send_error_now(exc)
            self._logged(ctx, down)
            return None
        if not direct:
            # Nothing is counted before the coroutine runs: one cancelled before
            # its first step (the client left at once) holds no slot.
            return self._serve_admitted(ctx, down, admitted)
        assert then is not None and isinstance(down, Answer)
        admitted.queue.take()  # free above, and nothing ran since
        self._begin(ctx, runtime)
        relay = DirectRelay(
            ctx, down, runtime, self.metrics, lambda: self._relayed(ctx, down, admitted, then)
        )
        self.relay.start_direct(ctx, runtime, admitted.path, relay)
        return relay

    def _relayed(
        self, ctx: RequestContext, down: Downstream, admitted: Admitted, then: Callable[[], None]
    ) -> None:
        self._end(ctx, down, admitted, 0.0)
        self._logged(ctx, down)
        then()

    def _admit(self, ctx: RequestContext) -> Admitted:
        """The request's checks, in order: body type, key, body, model, route."""
        check_content_type(ctx.content_type)
        key = ctx.key = self.auth.check_header(ctx.authorization)
        payload, model = ctx.payload, ctx.model = parse_payload(ctx.body)
        runtime = ctx.runtime = self.router.resolve(model)
        if key is not None and not (key.allows(model) or key.allows(runtime.name)):
            raise GatewayError(
                f"The API key {key.name!r} may not use model {model!r}.",
                status=403, error_type="permission_error", param="model",
                code="model_not_allowed",
            )  # fmt: skip
        path = runtime.adapter.upstream_path(ctx.path)
        if path is None:
            raise GatewayError(
                f"The engine of model {runtime.name!r} ({runtime.spec.engine}) has no "
                f"{ctx.path} endpoint.",
                status=404, error_type="invalid_request_error", code="unsupported_route",
            )  # fmt: skip
        if model != runtime.upstream_model:
            payload["model"] = runtime.upstream_model
            ctx.body = json.dumps(payload).encode()
        return Admitted(key, runtime, path, self.queues.get(runtime))

    async def _serve_admitted(
        self, ctx: RequestContext, down: Downstream, admitted: Admitted
    ) -> None:
        try:
            await self._forward(ctx, down, admitted)
        except GatewayError as exc:
            if down.started:
                await down.write(sse_error_event(exc))
                await down.end()
            else:
                ctx.bytes_out = down.send_error_now(exc)
        finally:
            self._logged(ctx, down)

    async def _forward(self, ctx: RequestContext, down: Downstream, admitted: Admitted) -> None:
        runtime, queue = admitted.runtime, admitted.queue
        self.limiter.admit(admitted.key)
        waited = 0.0
        if not queue.take():
            try:
                waited = await self._queue(queue, ctx)
            except BaseException:
                self.limiter.release(admitted.key)
                raise
        self._begin(ctx, runtime)
        try:
            if runtime.state is not ModelState.READY and await self.waiter.wait(ctx, down, runtime):
                return  # the wake failed; the stream already says why
            await self.relay.forward(ctx, down, runtime, admitted.path)
        except GatewayError as exc:
            down.status = exc.status if not down.started else down.status
            raise
        except asyncio.CancelledError:
            self.metrics.error(runtime.name, "client_disconnect")
            raise
        finally:
            self._end(ctx, down, admitted, waited)

    def _begin(self, ctx: RequestContext, runtime: ModelRuntime) -> None:
        """Count a request in flight on its model (it holds one of its slots)."""
        metrics, name = self.metrics, runtime.name
        metrics.inflight[name] += 1
        metrics.bytes_in[name] += len(ctx.body)
        if runtime.inflight == 0:
            runtime.busy_since = time.monotonic()
        runtime.inflight += 1

    def _end(
        self, ctx: RequestContext, down: Downstream, admitted: Admitted, waited: float
    ) -> None:
        runtime, name = admitted.runtime, admitted.runtime.name
        elapsed = time.perf_counter() - ctx.started
        admitted.queue.release(elapsed - waited)
        self.limiter.release(admitted.key)
        self.metrics.inflight[name] -= 1
        runtime.inflight -= 1
        runtime.last_used = time.monotonic()
        self.metrics.request_done(name, ctx.path, down.status, elapsed)

    def _logged(self, ctx: RequestContext, down: Downstream) -> None:
        if self.access is not None:
            self.access.request_done(ctx, down)

    async def _queue(self, queue: ModelQueue, ctx: RequestContext) -> float:
        """Wait in the model's queue (model_queue.py). A queued request holds no
        gateway-wide slot, only its key's: a hung model's queue (bounded by its
        max_queue) cannot fill the gateway's max_inflight and starve the others."""
        self.limiter.inflight -= 1
        try:
            return await queue.wait(request_priority(ctx.key, ctx.priority))
        finally:
            self.limiter.inflight += 1

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp route handler of the forwarded routes (connections the lean
        server handed to aiohttp, or an app served by aiohttp alone)."""
        down = AiohttpDownstream(request)
        if request.raw_path != request.path:
            try:
                check_target(request.raw_path)  # encoded bytes or a query: look closer
            except GatewayError as exc:
                return await down.error(exc)
        for name in ("Authorization", "Content-Type", "Content-Length"):
            if len(request.headers.getall(name, [])) > 1:
                return await down.error(check_duplicates(name))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return await down.error(too_large(self.max_body))
        ctx = RequestContext(
            path=request.path,
            query=request.query_string,
            body=body,
            authorization=request.headers.get("Authorization"),
            content_type=request.headers.get("Content-Type"),
            priority=request.headers.get(PRIORITY_HEADER),
            request_id=request.headers.get("X-Request-Id", ""),
        )
        await self.serve(ctx, down)
        assert down.response is not None
        return down.response


class AiohttpDownstream(Downstream):
    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    @property
    def started(self) -> bool:
        return self.response is not None and self.response.prepared

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        if self.request_id:
            headers["X-Request-Id"] = self.request_id
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.cors_origin:
            headers["Access-Control-Allow-Origin"] = self.cors_origin
            headers["Vary"] = "Origin"
        return headers

    async def error(self, exc: GatewayError) -> web.StreamResponse:
        self.send_error_now(exc)
        assert self.response is not None
        return self.response

    def send_now(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.response = web.Response(body=body, status=status, headers=self._headers(content_type))

    async def start_stream(self, status: int, content_type: str) -> None:
        self.status = status
        headers = {**self._headers(content_type), **STREAM_HEADERS}
        self.response = web.StreamResponse(status=status, headers=headers)
        await self.response.prepare(self.request)

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        await self.response.write(data)

    async def end(self) -> None:
        assert self.response is not None
        await self.response.write_eof()
