"""Sending a request on to its engine and relaying the answer. Bodies pass
through untouched; streams are relayed chunk by chunk as they arrive (no
buffering, no re-encoding). An engine's non-OpenAI error becomes an OpenAI
error object (engine_errors.py). An engine that dies mid-stream ends the
client's stream with an SSE error event and ``[DONE]``.

Two ways, one request each: ``start_direct`` for the common case on the lean
server (a ready engine on plain HTTP: the answer is relayed from the engine
connection's callbacks, direct_relay.py), ``forward`` for the rest (awaited:
streamed usage to count, https engines, answers after a wake, aiohttp's server).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import aiohttp

from sparkstack.errors import GatewayError
from sparkstack.gateway.context import EVENT_STREAM, JSON, Downstream, RequestContext
from sparkstack.gateway.direct_relay import DirectRelay
from sparkstack.gateway.engine_errors import engine_error
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import bad_request, sse_error_event
from sparkstack.gateway.request_id import forwardable
from sparkstack.gateway.request_target import upstream_target
from sparkstack.gateway.stream_usage import UsageCounter, wants_stream_usage
from sparkstack.gateway.upstream import (
    UnsafeRequestError,
    UpstreamBrokenError,
    UpstreamConnectError,
)
from sparkstack.gateway.upstream_aiohttp import AiohttpResponse, aiohttp_post
from sparkstack.gateway.upstream_failures import (
    broke_off,
    no_answer,
    plain_answer,
    stopped_mid_stream,
    stream_finished,
)
from sparkstack.gateway.upstream_fast import FastUpstreamPool, FastUpstreamResponse
from sparkstack.stack.schema import GatewaySpec
from sparkstack.supervisor.runtime import ModelRuntime


class Relay:
    def __init__(
        self, session: aiohttp.ClientSession, metrics: GatewayMetrics, spec: GatewaySpec
    ) -> None:
        self.session = session
        self.metrics = metrics
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=spec.connect_timeout, sock_read=spec.read_timeout
        )
        self.pool = FastUpstreamPool(spec.connect_timeout, spec.read_timeout)
        self._headers: dict[str | None, dict[str, str]] = {}

    def _engine_headers(self, runtime: ModelRuntime) -> dict[str, str]:
        """The engine's own request headers (the same for every request to it)."""
        headers = self._headers.get(runtime.api_key)
        if headers is None:
            headers = {"Content-Type": JSON}
            if runtime.api_key:
                headers["Authorization"] = f"Bearer {runtime.api_key}"
            if len(self._headers) >= 256:
                self._headers.clear()
            self._headers[runtime.api_key] = headers
        return headers

    @staticmethod
    def _target(ctx: RequestContext, runtime: ModelRuntime, path: str) -> str:
        if ctx.query:
            allowed = runtime.adapter.query_params
            path = upstream_target(path, parse_qsl(ctx.query, keep_blank_values=True), allowed)
        return path

    @staticmethod
    def _request_id(ctx: RequestContext, runtime: ModelRuntime) -> str:
        ok = forwardable(ctx.request_id, runtime.adapter.request_ids_as_uuid)
        return ctx.request_id if ok else ""

    @staticmethod
    def can_start_direct(ctx: RequestContext, runtime: ModelRuntime) -> bool:
        """Whether the answer can be relayed by callbacks (``start_direct``)."""
        return runtime.base_url.startswith("http://") and (
            runtime.adapter.reports_stream_usage or not wants_stream_usage(ctx.payload)
        )

    def start_direct(
        self, ctx: RequestContext, runtime: ModelRuntime, path: str, relay: DirectRelay
    ) -> None:
        """Send the request; ``relay`` answers the client from the engine's callbacks
        (a refusal of the request itself is answered at once)."""
        try:
            self.pool.send(
                relay, runtime.base_url, self._target(ctx, runtime, path), ctx.body,
                self._engine_headers(runtime), self._request_id(ctx, runtime),
            )  # fmt: skip
        except GatewayError as exc:
            relay.refuse(exc)

    async def forward(
        self, ctx: RequestContext, down: Downstream, runtime: ModelRuntime, path: str
    ) -> None:
        counter = None
        if wants_stream_usage(ctx.payload) and not runtime.adapter.reports_stream_usage:
            # Asked before the request itself: single-slot engines serve one at a time.
            prompt_tokens = await runtime.adapter.count_prompt_tokens(
                self.session, runtime.base_url, ctx.payload, runtime.api_key
            )
            counter = UsageCounter(prompt_tokens)
        path = self._target(ctx, runtime, path)
        upstream = await self._send(runtime, path, ctx.body, self._request_id(ctx, runtime))
        runtime.last_byte = time.monotonic()
        try:
            content_type = upstream.content_type
            if content_type.startswith(EVENT_STREAM) or down.started:
                await self._relay_stream(ctx, down, upstream, runtime, counter)
                return
            try:
                data = await upstream.read()
            except (UpstreamBrokenError, TimeoutError) as exc:
                raise broke_off(self.metrics, runtime.name, exc) from exc
            status = upstream.status
            name = runtime.name
            content_type, data = plain_answer(self.metrics, name, status, content_type, data)
            ctx.bytes_out = len(data)
            await down.send(status, content_type, data)
        finally:
            upstream.close()

    async def _send(
        self, runtime: ModelRuntime, path: str, body: bytes, request_id: str
    ) -> FastUpstreamResponse | AiohttpResponse:
        """The engine's answer head, or the error that says why there is none."""
        headers = self._engine_headers(runtime)
        try:
            if runtime.base_url.startswith("http://"):
                return await self.pool.post(runtime.base_url, path, body, headers, request_id)
            if request_id:
                headers = {**headers, "x-request-id": request_id}
            return await aiohttp_post(
                self.session, runtime.base_url + path, body, headers, self.timeout
            )
        except UnsafeRequestError as exc:
            raise bad_request(f"The request cannot be sent to the engine safely: {exc}.") from exc
        except (UpstreamConnectError, UpstreamBrokenError, TimeoutError) as exc:
            raise no_answer(self.metrics, runtime, exc) from exc

    async def _relay_stream(
        self,
        ctx: RequestContext,
        down: Downstream,
        upstream: FastUpstreamResponse | AiohttpResponse,
        runtime: ModelRuntime,
        counter: UsageCounter | None,
    ) -> None:
        if down.started and not upstream.content_type.startswith(EVENT_STREAM):
            # Stream headers went out while the model woke; an error answer goes in-band.
            data = await upstream.read()
            error = engine_error(runtime.name, upstream.status, upstream.content_type, data)
            await down.write(sse_error_event(error))
            await down.end()
            return
        if not down.started:
            await down.start_stream(upstream.status, upstream.content_type)
        name = runtime.name
        tail = b""
        sent = 0
        try:
            async for chunk in upstream.iter_chunks():
                runtime.last_byte = time.monotonic()
                if not sent:
                    ctx.ttft = time.perf_counter() - ctx.started
                    self.metrics.ttft[name].observe(ctx.ttft)
                await down.write(counter.feed(chunk) if counter else chunk)
                sent += len(chunk)
                tail = chunk
        except (UpstreamBrokenError, TimeoutError):
            if not stream_finished(tail):
                # The engine died mid-stream: say so in-band, then end the stream.
                await down.write(sse_error_event(stopped_mid_stream(self.metrics, name)))
        finally:
            self.metrics.bytes_out[name] += sent
            ctx.bytes_out = sent
        await down.end()
