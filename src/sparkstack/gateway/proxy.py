"""Forwarding requests to the engine that serves the requested model.

Per request: authorize the key (when keys exist), read the body (bounded),
find the model, check the key may use it, admit it under the limits, forward.
Bodies pass through untouched unless an alias must be renamed to the engine's
model name. Streams are relayed chunk by chunk as they arrive (no buffering, no
re-encoding). A client that goes away cancels the handler, which closes the
upstream request at once; an upstream that dies mid-stream ends the client's
stream with an SSE error event and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from sparkstack.errors import GatewayError, SparkstackError
from sparkstack.gateway.keys import KeyIndex, KeyRecord
from sparkstack.gateway.limits import Limiter
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import (
    bad_request,
    error_response,
    sse_error_event,
    too_large,
    upstream_error,
)
from sparkstack.gateway.request_target import check_target, upstream_target
from sparkstack.gateway.routing import Router
from sparkstack.gateway.stream_usage import UsageCounter, wants_stream_usage
from sparkstack.gateway.upstream import (
    UnsafeRequestError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamResponse,
)
from sparkstack.gateway.upstream_aiohttp import AiohttpResponse, aiohttp_post
from sparkstack.stack.schema import GatewaySpec
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Waker = Callable[[str], Awaitable[ModelRuntime]]


def parse_model(body: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object of a request body and its ``model`` field, or a 400."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(
            "The request has no 'model' field; set it to one of the names in GET /v1/models.",
            param="model",
        )
    return payload, model


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
    )


def _auth_error(message: str, code: str) -> GatewayError:
    return GatewayError(message, status=401, error_type="invalid_request_error", code=code)


class Authorizer:
    """Bearer keys; with no key file entries (and loopback only) the gateway is open.
    Once keys are required, a missing, empty or damaged key file refuses everything."""

    def __init__(self, keys: KeyIndex | None) -> None:
        self.keys = keys

    def check(self, request: web.Request, admin: bool = False) -> KeyRecord | None:
        if self.keys is None:
            return None
        self.keys.refresh()
        if not self.keys.enabled:
            return None
        if self.keys.problem:
            raise _auth_error(
                f"The gateway accepts no key now: {self.keys.problem}. Restore the key file "
                "or create a key with `sparkstack keys create NAME`.",
                "key_file_unavailable",
            )
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or len(header) <= 7:
            raise _auth_error(
                "No API key: send it as 'Authorization: Bearer sk-ss-...' (create one with "
                "`sparkstack keys create NAME`).",
                "missing_api_key",
            )
        record = self.keys.lookup(header[7:].strip())
        if record is None:
            raise _auth_error("Incorrect API key provided.", "invalid_api_key")
        if record.revoked:
            raise _auth_error(f"The API key {record.id!r} was revoked.", "revoked_api_key")
        if admin and not record.admin:
            raise GatewayError(
                "This endpoint needs an admin key (`sparkstack keys create NAME --admin`).",
                status=403, error_type="permission_error", code="admin_scope_required",
            )  # fmt: skip
        return record


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
    ) -> None:
        self.router = router
        self.session = session
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.spec = spec
        self.waker = waker
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=spec.connect_timeout, sock_read=spec.read_timeout
        )
        self.max_body = int(spec.max_body_mib * 2**20)
        self.pool = UpstreamPool(spec.connect_timeout, spec.read_timeout)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The route handler: OpenAI-shaped errors are made here, with no middleware
        layer on the hot path."""
        try:
            return await self._handle(request)
        except GatewayError as exc:
            return error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return error_response(too_large(self.max_body))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.raw_path != request.path:
            check_target(request.raw_path)  # encoded bytes or a query: look closer
        key = self.auth.check(request)
        body = await request.read()
        payload, model = parse_model(body)
        runtime = self.router.resolve(model)
        if key is not None and not (key.allows(model) or key.allows(runtime.name)):
            raise GatewayError(
                f"The API key {key.name!r} may not use model {model!r}.",
                status=403, error_type="permission_error", param="model",
                code="model_not_allowed",
            )  # fmt: skip
        path = runtime.adapter.upstream_path(request.path)
        if path is None:
            raise GatewayError(
                f"The engine of model {runtime.name!r} ({runtime.spec.engine}) has no "
                f"{request.path} endpoint.",
                status=404, error_type="invalid_request_error", code="unsupported_route",
            )  # fmt: skip
        if model != runtime.upstream_model:
            payload["model"] = runtime.upstream_model
            body = json.dumps(payload).encode()
        name = runtime.name
        self.limiter.admit(key, name)
        metrics = self.metrics
        metrics.inflight[name] += 1
        metrics.bytes_in[name] += len(body)
        if runtime.inflight == 0:
            runtime.busy_since = time.monotonic()
        runtime.inflight += 1
        started = time.perf_counter()
        status = 499
        try:
            prepared = None
            if runtime.state is not ModelState.READY:
                prepared, answered = await self._wait_for(request, runtime, payload)
                if answered and prepared is not None:
                    return prepared  # the wake failed; the stream already says why
            response = await self._forward(request, runtime, path, body, payload, started, prepared)
            status = response.status
            return response
        except GatewayError as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            metrics.error(name, "client_disconnect")
            raise
        finally:
            self.limiter.release(key, name)
            metrics.inflight[name] -= 1
            runtime.inflight -= 1
            runtime.last_used = time.monotonic()
            metrics.request_done(name, request.path, status, time.perf_counter() - started)

    async def _wait_for(
        self, request: web.Request, runtime: ModelRuntime, payload: dict[str, Any]
    ) -> tuple[web.StreamResponse | None, bool]:
        """Wait (bounded) for a stopped on-demand or failed model to start. A streaming
        client gets SSE comments meanwhile; the prepared stream is returned so the
        answer continues in it, with True when it already carries the wake's error."""
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
                status=503, error_type="service_unavailable", code="model_queue_full",
            )  # fmt: skip
        assert self.waker is not None
        streaming = bool(payload.get("stream"))
        prepared: web.StreamResponse | None = None
        name = runtime.name
        runtime.waiting += 1
        self.metrics.queued[name] += 1
        wake = asyncio.ensure_future(self.waker(name))
        began = time.monotonic()
        try:
            while not wake.done():
                left = self.spec.wake_wait - (time.monotonic() - began)
                if left <= 0:
                    raise GatewayError(
                        f"The model {name!r} is still loading after {self.spec.wake_wait:g}s "
                        f"(state: {runtime.state.value}); retry later.",
                        status=503, error_type="service_unavailable", code="model_loading",
                    )  # fmt: skip
                step = min(left, self.spec.keepalive_interval) if streaming else left
                await asyncio.wait([wake], timeout=step)
                if streaming and not wake.done():
                    if prepared is None:
                        prepared = web.StreamResponse(
                            headers={"Content-Type": "text/event-stream", **_STREAM_HEADERS}
                        )
                        await prepared.prepare(request)
                    waited = time.monotonic() - began
                    await prepared.write(f": loading model {name} ({waited:.0f}s)\n\n".encode())
            try:
                wake.result()
            except SparkstackError as exc:
                raise GatewayError(
                    f"The model {name!r} could not be started: {exc}",
                    status=503,
                    error_type="service_unavailable",
                    code="model_start_failed",
                ) from exc
        except GatewayError as exc:
            if prepared is None:
                raise
            await prepared.write(sse_error_event(exc))
            await prepared.write_eof()
            return prepared, True
        finally:
            runtime.waiting -= 1
            self.metrics.queued[name] -= 1
            if not wake.done():
                wake.cancel()  # only this waiter; the start itself is shielded
        return prepared, False

    async def _forward(
        self,
        request: web.Request,
        runtime: ModelRuntime,
        path: str,
        body: bytes,
        payload: dict[str, Any],
        started: float,
        prepared: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if runtime.api_key:
            headers["Authorization"] = f"Bearer {runtime.api_key}"
        counter = None
        if wants_stream_usage(payload) and not runtime.adapter.reports_stream_usage:
            # Asked before the request itself: single-slot engines serve one at a time.
            prompt_tokens = await runtime.adapter.count_prompt_tokens(
                self.session, runtime.base_url, payload, runtime.api_key
            )
            counter = UsageCounter(prompt_tokens)
        if request.query_string:
            allowed = runtime.adapter.query_params
            path = upstream_target(path, request.query.items(), allowed)
        upstream: UpstreamResponse | AiohttpResponse
        try:
            if runtime.base_url.startswith("http://"):
                upstream = await self.pool.post(runtime.base_url, path, body, headers)
            else:
                upstream = await aiohttp_post(
                    self.session, runtime.base_url + path, body, headers, self.timeout
                )
        except UnsafeRequestError as exc:
            raise bad_request(f"The request cannot be sent to the engine safely: {exc}.") from exc
        except (UpstreamConnectError, UpstreamBrokenError) as exc:
            self.metrics.error(runtime.name, "upstream_unreachable")
            raise upstream_error(
                f"The engine of model {runtime.name!r} is not reachable at "
                f"{runtime.base_url} ({exc}); see `sparkstack logs {runtime.name}`."
            ) from exc
        except TimeoutError as exc:
            self.metrics.error(runtime.name, "upstream_timeout")
            raise upstream_error(
                f"The engine of model {runtime.name!r} did not answer in time.", status=504
            ) from exc
        runtime.last_byte = time.monotonic()
        try:
            content_type = upstream.content_type
            if content_type.startswith("text/event-stream") or prepared is not None:
                return await self._relay_stream(
                    request, upstream, runtime, counter, started, prepared
                )
            try:
                data = await upstream.read()
            except (UpstreamBrokenError, TimeoutError) as exc:
                self.metrics.error(runtime.name, "upstream_died")
                raise upstream_error(
                    f"The engine of model {runtime.name!r} broke off its answer ({exc})."
                ) from exc
            self.metrics.bytes_out[runtime.name] += len(data)
            if upstream.status >= 500:
                self.metrics.error(runtime.name, "upstream_status")
            return web.Response(
                body=data, status=upstream.status, headers={"Content-Type": content_type}
            )
        finally:
            upstream.close()

    async def _relay_stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse | AiohttpResponse,
        runtime: ModelRuntime,
        counter: UsageCounter | None,
        started: float,
        prepared: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        if prepared is not None and not upstream.content_type.startswith("text/event-stream"):
            # Stream headers went out while the model woke; an error answer goes in-band.
            message = (await upstream.read()).decode("utf-8", "replace")
            error = upstream_error(f"The engine answered {upstream.status}: {message}")
            await prepared.write(sse_error_event(error))
            await prepared.write_eof()
            return prepared
        response = (
            prepared
            if prepared is not None
            else web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.content_type, **_STREAM_HEADERS},
            )
        )
        if not response.prepared:
            await response.prepare(request)
        tail = b""
        sent = 0
        try:
            async for chunk in upstream.iter_chunks():
                runtime.last_byte = time.monotonic()
                if not sent:
                    self.metrics.ttft[runtime.name].observe(time.perf_counter() - started)
                await response.write(counter.feed(chunk) if counter else chunk)
                sent += len(chunk)
                tail = chunk
        except (UpstreamBrokenError, TimeoutError):
            if not tail.rstrip().endswith(b"[DONE]"):
                # The engine died mid-stream: say so in-band, then end the stream.
                self.metrics.error(runtime.name, "upstream_died_mid_stream")
                error = upstream_error(
                    f"The engine of model {runtime.name!r} stopped in the middle of the stream."
                )
                await response.write(sse_error_event(error))
        finally:
            self.metrics.bytes_out[runtime.name] += sent
        await response.write_eof()
        return response
