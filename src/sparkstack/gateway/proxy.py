"""Forwarding ``/v1/*`` requests to the engine that serves the requested model.

Bodies pass through untouched unless an alias must be renamed to the engine's
model name. Streams are relayed chunk by chunk as they arrive (no buffering, no
re-encoding). A client that goes away cancels the handler, which closes the
upstream request; an upstream that dies mid-stream ends the client's stream with
an SSE error event and ``[DONE]``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.openai_errors import bad_request, sse_error_event, upstream_error
from sparkstack.gateway.routing import Router
from sparkstack.gateway.stream_usage import UsageCounter, wants_stream_usage
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

_UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=3600)
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


class Forwarder:
    def __init__(self, router: Router, session: aiohttp.ClientSession) -> None:
        self.router = router
        self.session = session

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload, model = parse_model(body)
        runtime = self.router.resolve(model)
        check_ready(runtime)
        if model != runtime.upstream_model:
            payload["model"] = runtime.upstream_model
            body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if runtime.api_key:
            headers["Authorization"] = f"Bearer {runtime.api_key}"
        url = runtime.base_url + request.path_qs
        counter = None
        if wants_stream_usage(payload) and not runtime.adapter.reports_stream_usage:
            # Asked before the request itself: single-slot engines serve one at a time.
            prompt_tokens = await runtime.adapter.count_prompt_tokens(
                self.session, runtime.base_url, payload
            )
            counter = UsageCounter(prompt_tokens)
        try:
            upstream_cm = self.session.post(
                url, data=body, headers=headers, timeout=_UPSTREAM_TIMEOUT
            )
            async with upstream_cm as upstream:
                content_type = upstream.headers.get("Content-Type", "application/json")
                if content_type.startswith("text/event-stream"):
                    return await self._relay_stream(request, upstream, runtime, counter)
                data = await upstream.read()
                return web.Response(
                    body=data, status=upstream.status, headers={"Content-Type": content_type}
                )
        except aiohttp.ClientConnectionError as exc:
            raise upstream_error(
                f"The engine of model {runtime.name!r} is not reachable at "
                f"{runtime.base_url} ({exc.__class__.__name__}); see `sparkstack logs "
                f"{runtime.name}`."
            ) from exc
        except TimeoutError as exc:
            raise upstream_error(
                f"The engine of model {runtime.name!r} did not answer in time.", status=504
            ) from exc

    async def _relay_stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        runtime: ModelRuntime,
        counter: UsageCounter | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": upstream.headers["Content-Type"], **_STREAM_HEADERS},
        )
        await response.prepare(request)
        tail = b""
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(counter.feed(chunk) if counter else chunk)
                tail = chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            if request.transport is None or request.transport.is_closing():
                raise
            if tail.rstrip().endswith(b"[DONE]"):
                # The stream was complete; only the connection's close was unclean.
                await response.write_eof()
                return response
            error = upstream_error(
                f"The engine of model {runtime.name!r} stopped in the middle of the stream."
            )
            await response.write(sse_error_event(error))
        await response.write_eof()
        return response
