"""``build_app``: the gateway's aiohttp application, a pure factory over the
supervised models, one shared upstream client session, the key index and the
gateway settings. Handlers stay thin; forwarding lives in proxy.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from sparkstack.errors import GatewayError, SparkstackError
from sparkstack.gateway.keys import KeyIndex
from sparkstack.gateway.limits import Limiter, model_limits
from sparkstack.gateway.metrics import GatewayMetrics, relabel
from sparkstack.gateway.openai_errors import error_response
from sparkstack.gateway.proxy import Authorizer, Forwarder, Waker
from sparkstack.gateway.request_target import check_target
from sparkstack.gateway.routing import Router
from sparkstack.gateway.status import model_status, models_list
from sparkstack.stack.schema import GatewaySpec, Policy
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

FORWARDED_ROUTES = (
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/rerank", "/v1/score", "/tokenize", "/detokenize",
)  # fmt: skip
_ENGINE_METRICS_TIMEOUT = aiohttp.ClientTimeout(total=3)

METRICS_KEY = web.AppKey("metrics", GatewayMetrics)
AdminControl = Callable[[str, str], Awaitable[str]]
"""(model, action) -> outcome; actions: load, unload, sleep, wake."""


def openai_errors(handler: Handler) -> Handler:
    """Wrap a small handler so its GatewayError leaves as an OpenAI error. Forwarded
    routes do this themselves: no middleware layer sits on the hot path."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            return error_response(exc)

    return wrapped


async def not_found(request: web.Request) -> web.StreamResponse:
    try:
        check_target(request.raw_path)  # a smuggling attempt is a 400, not a 404
    except GatewayError as exc:
        return error_response(exc)
    return error_response(
        GatewayError(
            f"Not Found: {request.method} {request.path}. The gateway serves "
            f"{', '.join(FORWARDED_ROUTES)}, GET /v1/models, /health, /metrics.",
            status=404,
            error_type="invalid_request_error",
            code="unknown_route",
        )
    )


async def engine_metrics(
    models: dict[str, ModelRuntime], session: aiohttp.ClientSession
) -> list[str]:
    """Every ready engine's own /metrics, each sample labelled with its model."""
    targets = [
        rt for rt in models.values()
        if rt.state is ModelState.READY and rt.adapter.metrics_path and rt.base_url
    ]  # fmt: skip

    async def fetch(runtime: ModelRuntime) -> str:
        assert runtime.adapter.metrics_path is not None
        headers = {"Authorization": f"Bearer {runtime.api_key}"} if runtime.api_key else None
        try:
            async with session.get(
                runtime.base_url + runtime.adapter.metrics_path,
                headers=headers, timeout=_ENGINE_METRICS_TIMEOUT,
            ) as response:  # fmt: skip
                return await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return ""

    texts = await asyncio.gather(*(fetch(rt) for rt in targets))
    seen: set[str] = set()
    lines: list[str] = []
    for runtime, text in zip(targets, texts, strict=True):
        lines += relabel(text, runtime.name, seen)
    return lines


def health_handler(
    models: dict[str, ModelRuntime], keys: KeyIndex | None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /health``, no key needed: "ok" when every always-on model is ready and
    the key file (when keys are required) is valid; each model's state."""

    async def health(request: web.Request) -> web.Response:
        states = {name: rt.state.value for name, rt in models.items()}
        ready = all(
            rt.state is ModelState.READY
            for rt in models.values()
            if rt.spec.policy is Policy.ALWAYS_ON
        )
        body: dict[str, object] = {"status": "ok" if ready else "degraded", "models": states}
        if keys is not None:
            keys.refresh()
            body["keys"] = keys.problem or ("required" if keys.enabled else "open")
            if keys.problem:
                body["status"] = "degraded"
        return web.json_response(body)

    return health


def build_app(
    models: dict[str, ModelRuntime],
    session: aiohttp.ClientSession,
    spec: GatewaySpec | None = None,
    keys: KeyIndex | None = None,
    metrics: GatewayMetrics | None = None,
    waker: Waker | None = None,
    admin: AdminControl | None = None,
) -> web.Application:
    spec = spec or GatewaySpec()
    metrics = metrics or GatewayMetrics()
    max_body = int(spec.max_body_mib * 2**20)
    router = Router(models)
    auth = Authorizer(keys)
    limits = model_limits(spec.max_inflight, {n: rt.spec.max_inflight for n, rt in models.items()})
    limiter = Limiter(max_inflight=spec.max_inflight, per_model=limits)
    forwarder = Forwarder(router, session, auth, limiter, metrics, spec, waker)
    app = web.Application(client_max_size=max_body)
    app[METRICS_KEY] = metrics

    async def close_pool(app: web.Application) -> None:
        await forwarder.pool.close()

    app.on_cleanup.append(close_pool)

    async def list_models(request: web.Request) -> web.Response:
        key = auth.check(request)
        entries = models_list(models)
        if key is not None and key.models is not None:
            entries = [
                m for m in entries
                if key.allows(str(m["id"])) or key.allows(str(m.get("alias_of", "")))
            ]  # fmt: skip
        return web.json_response({"object": "list", "data": entries})

    async def admin_status(request: web.Request) -> web.Response:
        auth.check(request, admin=True)
        rows = await asyncio.to_thread(lambda: [model_status(rt) for rt in models.values()])
        return web.json_response({"models": [row.model_dump() for row in rows]})

    async def prometheus(request: web.Request) -> web.Response:
        auth.check(request)
        lines = await engine_metrics(models, session)
        text = metrics.render() + ("\n".join(lines) + "\n" if lines else "")
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app.router.add_get("/v1/models", openai_errors(list_models))
    app.router.add_get("/health", health_handler(models, keys))
    app.router.add_get("/admin/status", openai_errors(admin_status))
    if admin is not None:
        control = admin

        async def admin_action(request: web.Request) -> web.Response:
            auth.check(request, admin=True)
            name, action = request.match_info["name"], request.match_info["action"]
            runtime = router.resolve(name)
            try:
                outcome = await control(runtime.name, action)
            except SparkstackError as exc:
                raise GatewayError(
                    f"{action} {runtime.name}: {exc}", status=409,
                    error_type="invalid_request_error", code=f"{action}_failed",
                ) from exc  # fmt: skip
            return web.json_response(
                {"model": runtime.name, "action": action, "outcome": outcome,
                 "state": runtime.state.value}
            )  # fmt: skip

        app.router.add_post(
            "/admin/models/{name}/{action:load|unload|sleep|wake}", openai_errors(admin_action)
        )
    app.router.add_get("/metrics", openai_errors(prometheus))
    for path in FORWARDED_ROUTES:
        app.router.add_post(path, forwarder.handle)
    app.router.add_route("*", r"/{tail:[\s\S]*}", not_found)  # "." skips newlines
    return app
