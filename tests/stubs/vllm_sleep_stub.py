"""A stand-in for vLLM's server that speaks its sleep-mode API (the CPU build
refuses sleep mode): /sleep?level=N, /wake_up, /is_sleeping, /collective_rpc,
/reset_prefix_cache, plus /health and a chat endpoint that fails while asleep.
GET /stub/calls lists what it was asked, for the tests."""

from __future__ import annotations

import argparse
import os

from aiohttp import web
from aiohttp.typedefs import Handler

calls: list[str] = []
state: dict[str, object] = {"level": None}


@web.middleware
async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/stub/calls":
        return await handler(request)
    calls.append(f"{request.method} {request.path_qs}")
    key = state["key"]
    authorized = request.headers.get("Authorization") == f"Bearer {key}"
    if key and request.path != "/health" and not authorized:
        return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def chat(request: web.Request) -> web.Response:
    if state["level"] is not None:
        return web.json_response({"error": "engine is sleeping"}, status=503)
    message = {"role": "assistant", "content": "ok"}
    return web.json_response(
        {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
    )


async def sleep(request: web.Request) -> web.Response:
    if not state["sleep_mode"]:
        return web.json_response({"error": "sleep mode not enabled"}, status=400)
    state["level"] = int(request.query.get("level", "1"))
    return web.Response(text="")


async def wake_up(request: web.Request) -> web.Response:
    state["level"] = None
    return web.Response(text="")


async def is_sleeping(request: web.Request) -> web.Response:
    return web.json_response({"is_sleeping": state["level"] is not None})


async def ok(request: web.Request) -> web.Response:
    if request.can_read_body:
        calls[-1] += " " + (await request.text())
    return web.json_response({})


async def list_calls(request: web.Request) -> web.Response:
    return web.json_response(calls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--enable-sleep-mode", action="store_true")
    args, _ = parser.parse_known_args()
    state["key"] = os.environ.get("VLLM_API_KEY")
    # vLLM serves the sleep endpoints only in dev mode, with sleep mode enabled
    state["sleep_mode"] = args.enable_sleep_mode and os.environ.get("VLLM_SERVER_DEV_MODE") == "1"
    app = web.Application(middlewares=[record])
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/sleep", sleep)
    app.router.add_post("/wake_up", wake_up)
    app.router.add_get("/is_sleeping", is_sleeping)
    app.router.add_post("/collective_rpc", ok)
    app.router.add_post("/reset_prefix_cache", ok)
    app.router.add_get("/stub/calls", list_calls)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
