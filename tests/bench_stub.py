"""An in-process OpenAI-style streaming server for bench tests: answers chat and
completions with ``max_tokens`` chunks ``delay`` apart and a usage chunk; with
``faults``, some requests get a 500 or a stream cut mid-way (by arrival order).
``first_delay`` is the service time before the first token (``jump_delay`` from
request ``jump_after`` on: a server that slows mid-run), ``crlf`` frames SSE lines
with CRLF, and every prompt is kept in ``prompts``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class StubState:
    delay: float = 0.0
    faults: bool = False
    seen: int = 0
    kinds: list[str] = field(default_factory=list)
    first_delay: float = 0.0
    jump_after: int | None = None
    jump_delay: float = 0.0
    crlf: bool = False
    prompts: list[str] = field(default_factory=list)


def _plain_event(data: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _service_time(state: StubState, number: int) -> float:
    if state.jump_after is not None and number >= state.jump_after:
        return state.jump_delay
    return state.first_delay


def bench_stub_app(state: StubState) -> web.Application:
    def _event(data: dict[str, object]) -> bytes:
        event = _plain_event(data)
        return event.replace(b"\n", b"\r\n") if state.crlf else event

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        number = state.seen
        state.seen += 1
        chat = "messages" in body
        state.prompts.append(body["messages"][0]["content"] if chat else body["prompt"])
        kind = "ok"
        if state.faults and number % 5 == 3:
            kind = "http_500"
        elif state.faults and number % 5 == 4:
            kind = "cut"
        state.kinds.append(kind)
        if kind == "http_500":
            return web.json_response(
                {"error": {"message": "overloaded, try later", "type": "server_error"}}, status=500
            )
        tokens = int(body.get("max_tokens", 16))
        first = _service_time(state, number)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if chat:
            await response.write(
                _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            )
        if first:
            await asyncio.sleep(first)
        for i in range(tokens):
            if state.delay:
                await asyncio.sleep(state.delay)
            piece = {"delta": {"content": f" w{i}"}} if chat else {"text": f" w{i}"}
            await response.write(_event({"choices": [{"index": 0, **piece}]}))
            if kind == "cut" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return response
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        usage = {"prompt_tokens": len(prompt.split()) + 5, "completion_tokens": tokens}
        done = b"data: [DONE]\r\n\r\n" if state.crlf else b"data: [DONE]\n\n"
        await response.write(_event({"choices": [], "usage": usage}) + done)
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_post("/v1/completions", answer)
    app.router.add_get("/v1/models", models)
    return app
