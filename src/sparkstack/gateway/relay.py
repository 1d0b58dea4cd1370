"""Sending a request on to its engine and relaying the answer. Bodies pass
through untouched; streams are relayed chunk by chunk as they arrive (no
buffering, no re-encoding). An engine's non-OpenAI error becomes an OpenAI
error object (engine_errors.py). An engine that dies mid-stream ends the
client's stream with an SSE error event and ``[DONE]``."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import aiohttp

from sparkstack.gateway.context import EVENT_STREAM, JSON, Downstream, RequestContext
from sparkstack.gateway.engine_errors import engine_error, is_openai_error
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import (
    bad_request,
    error_json,
    sse_error_event,
    upstream_error,
)
from sparkstack.gateway.request_id import forwardable
from sparkstack.gateway.request_target import upstream_target
from sparkstack.gateway.stream_usage import UsageCounter, wants_stream_usage
from sparkstack.gateway.upstream import (
    UnsafeRequestError,
    UpstreamBrokenError,
    UpstreamConnectError,
)
from sparkstack.gateway.upstream_aiohttp import AiohttpResponse, aiohttp_post
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

    async def forward(
        self, ctx: RequestContext, down: Downstream, runtime: ModelRuntime, path: str
    ) -> None:
        headers = {"Content-Type": JSON}
        request_id = ""
        if forwardable(ctx.request_id, runtime.adapter.request_ids_as_uuid):
            request_id = ctx.request_id
        if runtime.api_key:
            headers["Authorization"] = f"Bearer {runtime.api_key}"
        counter = None
        if wants_stream_usage(ctx.payload) and not runtime.adapter.reports_stream_usage:
            # Asked before the request itself: single-slot engines serve one at a time.
            prompt_tokens = await runtime.adapter.count_prompt_tokens(
                self.session, runtime.base_url, ctx.payload, runtime.api_key
            )
            counter = UsageCounter(prompt_tokens)
        if ctx.query:
            allowed = runtime.adapter.query_params
            path = upstream_target(path, parse_qsl(ctx.query, keep_blank_values=True), allowed)
        upstream = await self._send(runtime, path, ctx.body, headers, request_id)
        runtime.last_byte = time.monotonic()
        try:
            content_type = upstream.content_type
            if content_type.startswith(EVENT_STREAM) or down.started:
                await self._relay_stream(ctx, down, upstream, runtime, counter)
                return
            try:
                data = await upstream.read()
            except (UpstreamBrokenError, TimeoutError) as exc:
                self.metrics.error(runtime.name, "upstream_died")
                raise upstream_error(
                    f"The engine of model {runtime.name!r} broke off its answer ({exc})."
                ) from exc
            self.metrics.bytes_out[runtime.name] += len(data)
            status = upstream.status
            if status >= 400:
                if status >= 500:
                    self.metrics.error(runtime.name, "upstream_status")
                if not is_openai_error(content_type, data):
                    data = error_json(engine_error(runtime.name, status, content_type, data))
                    content_type = JSON
            ctx.bytes_out = len(data)
            await down.send(status, content_type, data)
        finally:
            upstream.close()

    async def _send(
        self,
        runtime: ModelRuntime,
        path: str,
        body: bytes,
        headers: dict[str, str],
        request_id: str,
    ) -> FastUpstreamResponse | AiohttpResponse:
        """The engine's answer head, or the error that says why there is none
        (``headers`` are the engine's own, the same for every request)."""
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
            if not tail.rstrip().endswith(b"[DONE]"):
                # The engine died mid-stream: say so in-band, then end the stream.
                self.metrics.error(name, "upstream_died_mid_stream")
                error = upstream_error(
                    f"The engine of model {name!r} stopped in the middle of the stream."
                )
                await down.write(sse_error_event(error))
        finally:
            self.metrics.bytes_out[name] += sent
            ctx.bytes_out = sent
        await down.end()
