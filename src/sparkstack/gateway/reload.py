"""The gateway's side of a hot reload: ``POST /admin/reload`` (admin key) runs
one and answers its outcome, and ``models_changed`` makes the routing table and
the per-model in-flight caps follow the new model set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from sparkstack.gateway.auth import Authorizer
from sparkstack.gateway.limits import model_limits
from sparkstack.gateway.proxy import Forwarder
from sparkstack.supervisor.reload import ReloadResult

ReloadAction = Callable[[str], Awaitable[ReloadResult]]
"""Runs a reload; its argument names what triggered it."""


def reload_handler(auth: Authorizer, reload: ReloadAction) -> Handler:
    """The handler of ``POST /admin/reload``: 200 with the result either way
    (``applied`` says whether the file was taken, ``reason`` why not)."""

    async def admin_reload(request: web.Request) -> web.StreamResponse:
        auth.check(request, admin=True)
        result = await reload("POST /admin/reload")
        return web.json_response(result.as_json())

    return admin_reload


def models_changed(forwarder: Forwarder, global_limit: int) -> None:
    """Route to the models the supervisor holds now; removed names answer 404."""
    router = forwarder.router
    router.refresh()
    own = {name: rt.spec.max_inflight for name, rt in router.models.items()}
    forwarder.limiter.per_model = model_limits(global_limit, own)
