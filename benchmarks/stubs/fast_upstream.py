"""A fast fake OpenAI upstream for gateway overhead benchmarks: answers chat
completions at once, plain (a 16-token answer) or streamed (N chunks, and a
usage chunk when ``stream_options.include_usage`` asks for one).

usage: python -m benchmarks.stubs.fast_upstream PORT [CHUNKS]
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

ANSWER = {
    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": " ".join(["tok"] * 16)}}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24},
}  # fmt: skip
BODY = json.dumps(ANSWER).encode()


def chunk(i: int) -> bytes:
    data = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
            "model": "stub", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def usage_chunk(chunks: int) -> bytes:
    data = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
            "model": "stub", "choices": [],
            "usage": {"prompt_tokens": 8, "completion_tokens": chunks,
                      "total_tokens": 8 + chunks}}  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def build(chunks: int) -> web.Application:
    stream = [chunk(i) for i in range(chunks)] + [b"data: [DONE]\n\n"]
    with_usage = [*stream[:-1], usage_chunk(chunks), stream[-1]]

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if not payload.get("stream"):
            return web.Response(body=BODY, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        wants_usage = (payload.get("stream_options") or {}).get("include_usage")
        for piece in with_usage if wants_usage else stream:
            await response.write(piece)
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = int(sys.argv[1])
    chunks = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    web.run_app(build(chunks), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
