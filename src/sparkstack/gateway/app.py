"""``build_app``: the gateway's aiohttp application, a pure factory over the
supervised models and one shared upstream client session."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from sparkstack.errors import GatewayError
from sparkstack.gateway.openai_errors import error_response
from sparkstack.gateway.proxy import Forwarder
from sparkstack.gateway.routing import Router
from sparkstack.gateway.status import model_status, models_list
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

MAX_BODY_BYTES = 64 * 1024 * 1024
FORWARDED_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves the gateway in the OpenAI error shape."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes."
        else:
            message = f"{exc.reason}: {request.method} {request.path}."
        return error_response(
            GatewayError(message, status=exc.status, error_type="invalid_request_error")
        )


def build_app(models: dict[str, ModelRuntime], session: aiohttp.ClientSession) -> web.Application:
    router = Router(models)
    forwarder = Forwarder(router, session)
    app = web.Application(middlewares=[openai_errors], client_max_size=MAX_BODY_BYTES)

    async def list_models(request: web.Request) -> web.Response:
        return web.json_response(models_list(models))

    async def health(request: web.Request) -> web.Response:
        states = {name: rt.state.value for name, rt in models.items()}
        ready = all(rt.state is ModelState.READY for rt in models.values())
        return web.json_response({"status": "ok" if ready else "degraded", "models": states})

    async def admin_status(request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(lambda: [model_status(rt) for rt in models.values()])
        return web.json_response({"models": [row.model_dump() for row in rows]})

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/admin/status", admin_status)
    for path in FORWARDED_ROUTES:
        app.router.add_post(path, forwarder.handle)
    return app
