"""``build_app``: the gateway's aiohttp application, a pure factory over the
supervised models, one shared upstream client session, the key index and the
gateway settings. Handlers stay thin; forwarding lives in proxy.py."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from sparkstack.engines.registry import forwarded_routes
from sparkstack.errors import GatewayError, SparkstackError
from sparkstack.gateway.access_log import AccessLog, access_middleware, set_request_id_header
from sparkstack.gateway.auth import Authorizer
from sparkstack.gateway.guard import PREFLIGHT_HEADERS, AccessGuard
from sparkstack.gateway.keys import KeyIndex
from sparkstack.gateway.limits import Limiter
from sparkstack.gateway.log_follow import LogFollower
from sparkstack.gateway.metrics import GatewayMetrics, relabel
from sparkstack.gateway.model_queue import ModelQueues
from sparkstack.gateway.openai_errors import error_response
from sparkstack.gateway.proxy import Forwarder
from sparkstack.gateway.reload import ReloadAction, reload_handler
from sparkstack.gateway.request_target import check_target
from sparkstack.gateway.routing import Router
from sparkstack.gateway.status import gateway_counters, models_list
from sparkstack.gateway.wake import Waker
from sparkstack.settings import Settings
from sparkstack.stack.schema import GatewaySpec, Policy
from sparkstack.supervisor.runtime import ModelRuntime, ModelState
from sparkstack.telemetry.assets import asset
from sparkstack.telemetry.events import stream_events
from sparkstack.telemetry.hub import Telemetry

_ENGINE_METRICS_TIMEOUT = aiohttp.ClientTimeout(total=3)

METRICS_KEY = web.AppKey("metrics", GatewayMetrics)
FORWARDER_KEY = web.AppKey("forwarder", Forwarder)
GUARD_KEY = web.AppKey("guard", AccessGuard)
SPEC_KEY = web.AppKey("spec", GatewaySpec)
TELEMETRY_KEY = web.AppKey("telemetry", Telemetry)
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


def guard_middleware(guard: AccessGuard) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Host and Origin checks (guard.py) for every route aiohttp serves, CORS
    preflights, and aiohttp's own HTTP errors in the OpenAI shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            hosts = request.headers.getall("Host", [])
            if len(hosts) > 1:
                raise GatewayError(
                    "The request has more than one Host header; send it once.",
                    status=400, error_type="invalid_request_error", code="invalid_header",
                )  # fmt: skip
            origin = guard.check(hosts[0] if hosts else None, request.headers.get("Origin"),
                                 request.path)  # fmt: skip
        except GatewayError as exc:
            return error_response(exc)
        if request.method == "OPTIONS" and origin is not None:
            return web.Response(
                status=204, headers={"Access-Control-Allow-Origin": origin, **PREFLIGHT_HEADERS}
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(
                GatewayError(
                    f"{exc.reason}: {request.method} {request.path}.", status=exc.status,
                    error_type="invalid_request_error", code=exc.reason.lower().replace(" ", "_"),
                )
            )  # fmt: skip
        if origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return middleware


@functools.cache
def known_routes() -> dict[str, str]:
    """Every route's path and its method, for a 405 that names the right one."""
    routes = {path: "POST" for path in forwarded_routes()}
    routes.update({"/v1/models": "GET", "/health": "GET", "/metrics": "GET"})
    return {**routes, "/admin/status": "GET"}


async def not_found(request: web.Request) -> web.StreamResponse:
    try:
        check_target(request.raw_path)  # a smuggling attempt is a 400, not a 404
    except GatewayError as exc:
        return error_response(exc)
    allowed = known_routes().get(request.path)
    if allowed is None and request.path.startswith("/admin/models/"):
        allowed = "POST"
    elif allowed is None and request.path.startswith("/admin/logs/"):
        allowed = "GET"
    if allowed is not None:
        return error_response(
            GatewayError(
                f"Method Not Allowed: {request.method} {request.path}; use {allowed}.",
                status=405, error_type="invalid_request_error", code="method_not_allowed",
            )
        )  # fmt: skip
    return error_response(
        GatewayError(
            f"Not Found: {request.method} {request.path}. The gateway serves "
            f"{', '.join(forwarded_routes())}, GET /v1/models, /health, /metrics.",
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


def add_telemetry(
    app: web.Application,
    telemetry: Telemetry,
    auth: Authorizer,
    metrics: GatewayMetrics,
    session: aiohttp.ClientSession,
) -> None:
    """The sampler's lifetime, the event stream and the dashboard's files."""
    app[TELEMETRY_KEY] = telemetry
    telemetry.gateway = lambda: gateway_counters(metrics)

    async def start_telemetry(app: web.Application) -> None:
        telemetry.start(session)

    async def end_streams(app: web.Application) -> None:
        telemetry.events.close()

    async def stop_telemetry(app: web.Application) -> None:
        await telemetry.stop()

    app.on_startup.append(start_telemetry)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_telemetry)

    async def admin_events(request: web.Request) -> web.StreamResponse:
        auth.check(request, admin=True)
        telemetry.watched()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await stream_events(telemetry.events, response.write)
        except ConnectionResetError:
            pass
        return response

    async def dashboard(request: web.Request) -> web.StreamResponse:
        found = asset(request.match_info.get("asset") or "index.html")
        if found is None:
            return await not_found(request)
        body, content_type = found
        return web.Response(body=body, content_type=content_type)

    app.router.add_get("/admin/events", openai_errors(admin_events))
    app.router.add_get("/ui", dashboard)
    app.router.add_get("/ui/{asset}", dashboard)


def add_logs(app: web.Application, follower: LogFollower, access: AccessLog | None) -> None:
    """``/admin/logs/{model}`` and the access log's flusher."""

    async def start_access_log(app: web.Application) -> None:
        if access is not None:
            access.start()

    async def stop_access_log(app: web.Application) -> None:
        if access is not None:
            await access.stop()

    app.on_startup.append(start_access_log)
    app.on_shutdown.append(follower.close)
    app.on_cleanup.append(stop_access_log)
    app.router.add_get("/admin/logs/{model}", openai_errors(follower.handle))


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
    telemetry: Telemetry | None = None,
    reload: ReloadAction | None = None,
    settings: Settings | None = None,
) -> web.Application:
    """``settings``: where the access log goes and the engines' logs are (without
    them no access log and no ``/admin/logs``)."""
    spec = spec or GatewaySpec()
    metrics = metrics or GatewayMetrics()
    telemetry = telemetry or Telemetry(models)
    max_body = int(spec.max_body_mib * 2**20)
    router = Router(models)
    auth = Authorizer(keys)
    limiter = Limiter(max_inflight=spec.max_inflight)
    queues = ModelQueues(models, spec.max_inflight, metrics)
    access = AccessLog(settings.gateway_log_file) if settings is not None else None
    forwarder = Forwarder(router, session, auth, limiter, metrics, spec, waker, queues, access)
    guard = AccessGuard(spec, lambda: auth.enabled)
    app = web.Application(
        client_max_size=max_body,
        middlewares=[access_middleware(access, frozenset(forwarded_routes())),
                     guard_middleware(guard)],
    )  # fmt: skip
    app.on_response_prepare.append(set_request_id_header)
    app[METRICS_KEY] = metrics
    app[FORWARDER_KEY] = forwarder
    app[GUARD_KEY] = guard
    app[SPEC_KEY] = spec

    async def close_pool(app: web.Application) -> None:
        await forwarder.pool.close()

    app.on_cleanup.append(close_pool)
    add_telemetry(app, telemetry, auth, metrics, session)
    if settings is not None:
        add_logs(app, LogFollower(router, auth, settings), access)

    async def list_models(request: web.Request) -> web.Response:
        key = auth.check(request)
        entries = models_list(models, telemetry.measured)
        if key is not None and key.models is not None:
            entries = [
                m for m in entries
                if key.allows(str(m["id"])) or key.allows(str(m.get("alias_of", "")))
            ]  # fmt: skip
        return web.json_response({"object": "list", "data": entries})

    async def admin_status(request: web.Request) -> web.Response:
        auth.check(request, admin=True)
        return web.Response(body=telemetry.document_bytes(), content_type="application/json")

    async def prometheus(request: web.Request) -> web.Response:
        auth.check(request)
        telemetry.watched()
        lines = telemetry.prometheus_lines() + await engine_metrics(models, session)
        text = metrics.render() + "\n".join(lines) + "\n"
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
    if reload is not None:
        app.router.add_post("/admin/reload", openai_errors(reload_handler(auth, reload)))
    app.router.add_get("/metrics", openai_errors(prometheus))
    for path in forwarded_routes():
        app.router.add_post(path, forwarder.handle)
    app.router.add_route("*", r"/{tail:[\s\S]*}", not_found)  # "." skips newlines
    return app
