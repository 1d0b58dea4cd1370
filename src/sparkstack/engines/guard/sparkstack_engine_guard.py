"""Runs inside an engine's own Python (its venv or container), never inside
sparkstack: an ASGI middleware that requires the engine's key on EVERY path, and a
launcher that wraps a uvicorn-based server with it. Standard library only.

Why: vLLM checks its API key only under /v1, /v2, /inference and /cohere
(vllm/entrypoints/serve/middleware/authenticate.py, GUARDED_PREFIX), so /sleep,
/wake_up, /collective_rpc, /reset_prefix_cache, /invocations, /tokenize and
/metrics answer anyone on the machine; llama-cpp-python leaves /docs and
/openapi.json open. With this guard only the holder of the key (the gateway)
reaches the engine at all.

* vLLM: ``--middleware sparkstack_engine_guard.RequireKey`` (vLLM's own hook).
* any server started with ``uvicorn.run`` (llama-cpp-python):
  ``python -m sparkstack_engine_guard llama_cpp.server ARGS...``.

The key comes from ``SPARKSTACK_ENGINE_KEY``; without it every request is refused.
"""

from __future__ import annotations

import hmac
import json
import os
import runpy
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

KEY_ENV = "SPARKSTACK_ENGINE_KEY"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REFUSAL = json.dumps(
    {
        "error": {
            "message": "This engine is reached only through the sparkstack gateway.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
).encode()


class RequireKey:
    """Pure ASGI middleware: ``Authorization: Bearer <key>`` on every HTTP and
    websocket request, compared in constant time; 401 otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        key = os.environ.get(KEY_ENV, "")
        self._expected = f"Bearer {key}".encode() if key else None

    def allowed(self, scope: Scope) -> bool:
        if self._expected is None:
            return False
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                return hmac.compare_digest(bytes(value), self._expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_REFUSAL)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _REFUSAL})


def main() -> None:
    """``python -m sparkstack_engine_guard MODULE ARGS...``: run MODULE as __main__
    with ``uvicorn.run`` serving ``RequireKey(app)`` instead of ``app``."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m sparkstack_engine_guard MODULE [ARGS...]")
    target = sys.argv[1]
    sys.argv = [target, *sys.argv[2:]]
    import uvicorn  # the engine's own dependency, present wherever the engine runs

    run = uvicorn.run

    def guarded_run(app: ASGIApp, *args: Any, **kwargs: Any) -> None:
        run(RequireKey(app), *args, **kwargs)

    uvicorn.run = guarded_run
    runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
