"""The gateway's side of a hot reload: ``POST /admin/reload`` (admin key) runs
one and answers its outcome, and ``models_changed`` makes the routing table and
the per-model queues and their slots follow the new model set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from sparkstack.gateway.auth import Authorizer
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


def models_changed(forwarder: Forwarder) -> None:
    """Route to the models the supervisor holds now (removed names answer 404) and
    share the in-flight slots among them."""
    forwarder.router.refresh()
    forwarder.queues.follow(forwarder.router.models)
