"""Hostile input (issue 17, point 1): every bad request is refused with a 4xx in
OpenAI's error shape, an engine's non-OpenAI error reaches the client as an
OpenAI error keeping the engine's status, and the gateway still serves normal
requests afterwards with its memory where it started.

Requests are written as raw bytes, so the gateway sees exactly what a hostile
client sends (no client library fixes anything up on the way).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest
from aiohttp import web

from tests.integration.conftest import StartGateway, StartStub

LIMIT = 2**20  # gateway.max_body_mib: 1
CHAT = b'{"model": "stub", "messages": [{"role": "user", "content": "hi"}]}'


@dataclass(frozen=True)
class Hostile:
    name: str
    request: bytes
    """The raw request; {host} is filled with the gateway's host:port."""
    status: int


def post(body: bytes, headers: str = "Content-Type: application/json\r\n") -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        + headers.encode()
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def deep(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return b'{"model": "stub", "x": ' + opener * levels + closer * levels + b"}"


def chunked(body_size: int) -> bytes:
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for _ in range(body_size // 65536))
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )


HOSTILE = [
    # pathological JSON
    Hostile("array nested 100,000 deep", post(deep(100_000)), 400),
    Hostile(
        "objects nested 100,000 deep",
        post(b'{"model": "stub", "x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001),
        400,
    ),  # fmt: skip
    Hostile("nested 200 deep", post(deep(200, b'{"a": [', b"]}")), 400),
    Hostile("duplicate model key", post(b'{"model": "stub", "model": "other"}'), 400),
    Hostile(
        "duplicate nested key",
        post(b'{"model": "stub", "messages": [{"role": "user", "role": "system"}]}'),
        400,
    ),  # fmt: skip
    Hostile("NaN", post(b'{"model": "stub", "temperature": NaN}'), 400),
    Hostile("Infinity", post(b'{"model": "stub", "temperature": Infinity}'), 400),
    Hostile("-Infinity", post(b'{"model": "stub", "top_p": -Infinity}'), 400),
    Hostile("non-UTF-8 byte in a string", post(b'{"model": "stub", "x": "\xff\xfe"}'), 400),
    Hostile("UTF-16 body", post('{"model": "stub"}'.encode("utf-16")), 400),
    Hostile("raw control byte in a string", post(b'{"model": "stub", "x": "a\x01b"}'), 400),
    Hostile("truncated JSON", post(b'{"model": "stub", "messages": [{"role"'), 400),
    Hostile("trailing garbage", post(b'{"model": "stub"} {"model": "other"}'), 400),
    Hostile("empty body", post(b""), 400),
    Hostile("JSON array body", post(b'[{"model": "stub"}]'), 400),
    Hostile("JSON string body", post(b'"stub"'), 400),
    Hostile("model is a number", post(b'{"model": 7}'), 400),
    Hostile("no model", post(b'{"messages": []}'), 400),
    Hostile("unknown model", post(b'{"model": "../../etc/passwd"}'), 404),
    Hostile(
        "one string over the body limit",
        post(b'{"model": "stub", "x": "' + b"a" * LIMIT + b'"}'),
        413,
    ),  # fmt: skip
    Hostile("chunked body over the limit", chunked(LIMIT + 65536), 413),
    Hostile(
        "Content-Length over the limit, no body",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        b"Content-Length: 99999999999\r\n\r\n",
        413,
    ),  # fmt: skip
    # bad headers
    Hostile(
        "duplicate Authorization",
        post(CHAT, "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"),
        400,
    ),  # fmt: skip
    Hostile("duplicate Host", post(CHAT, "Host: localhost\r\n"), 400),
    Hostile("Content-Type text/plain", post(CHAT, "Content-Type: text/plain\r\n"), 415),
    Hostile(
        "Content-Type form", post(CHAT, "Content-Type: application/x-www-form-urlencoded\r\n"), 415
    ),  # fmt: skip
    Hostile(
        "Content-Type multipart", post(CHAT, "Content-Type: multipart/form-data; b=x\r\n"), 415
    ),  # fmt: skip
    Hostile(
        "JSON in latin-1", post(CHAT, "Content-Type: application/json; charset=latin-1\r\n"), 415
    ),  # fmt: skip
    Hostile("header of 70 KB", post(CHAT, "X-Big: " + "a" * 70_000 + "\r\n"), 431),
    Hostile("200 headers", post(CHAT, "".join(f"X-H{i}: v\r\n" for i in range(200))), 431),
    Hostile(
        "no Host",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT,
        400,
    ),  # fmt: skip
    Hostile(
        "two different Content-Lengths",
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        b"Host: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        400,
    ),  # fmt: skip
    Hostile(
        "Content-Length with chunked",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),  # fmt: skip
    Hostile(
        "bad chunk size",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),  # fmt: skip
    Hostile("space in a header name", post(CHAT, "Bad Name: x\r\n"), 400),
    Hostile("garbage request line", b"HELLO THERE\r\n\r\n", 400),
    Hostile(
        "forged Host (DNS rebinding)", post(CHAT).replace(b"{host}", b"evil.example:80"), 403
    ),  # fmt: skip
    Hostile("foreign Origin", post(CHAT, "Origin: http://evil.example\r\n"), 403),
    Hostile(
        "null Origin on admin",
        b"POST /admin/models/stub/unload HTTP/1.1\r\nHost: {host}\r\n"
        b"Origin: null\r\nContent-Length: 0\r\n\r\n",
        403,
    ),  # fmt: skip
    # methods and routes
    Hostile(
        "GET on a POST route", b"GET /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n\r\n", 405
    ),  # fmt: skip
    Hostile("DELETE /v1/models", b"DELETE /v1/models HTTP/1.1\r\nHost: {host}\r\n\r\n", 405),
    Hostile(
        "PUT /admin/status",
        b"PUT /admin/status HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n",
        405,
    ),  # fmt: skip
    Hostile(
        "unknown route",
        b"POST /v1/nothing HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n",
        404,
    ),  # fmt: skip
    Hostile("path traversal", b"GET /../../etc/passwd HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
]


async def exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; the status and body of the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # refused before the whole request went out: the answer is there
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        else:
            body = await asyncio.wait_for(reader.read(), 10)
        return status, body
    finally:
        writer.close()


def assert_openai_error(body: bytes, status: int) -> dict[str, object]:
    error = json.loads(body)["error"]
    assert isinstance(error, dict), body[:200]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert set(error) == {"message", "type", "param", "code"}, (status, error)
    return error


FAULTS: dict[str, tuple[int, str, bytes]] = {
    "html": (500, "text/html", b"<html><head><title>500 Internal Server Error</title></head>"
             b"<body><h1>Internal Server Error</h1><p>the engine fell over</p></body></html>"),
    "text": (503, "text/plain", b"upstream overloaded, try later"),
    "empty": (502, "application/json", b""),
    "truncated": (500, "application/json", b'{"error": {"message": "out of mem'),
    "foreign": (422, "application/json", b'{"detail": [{"loc": ["body"], "msg": "bad"}]}'),
    "huge": (500, "text/plain", b"x" * 200_000),
    "openai": (400, "application/json",
               b'{"error": {"message": "max_tokens too large", "type": "BadRequestError", '
               b'"param": "max_tokens", "code": 400}}'),
}  # fmt: skip


async def faulty_engine() -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        payload = await request.json()
        fault = FAULTS.get(str(payload.get("fault", "")))
        if fault is None:
            return web.json_response({"object": "chat.completion", "choices": []})
        status, content_type, body = fault
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
async def gateway(start_stub: StartStub, start_test_gateway: StartGateway) -> str:
    return await start_test_gateway(await start_stub(await faulty_engine()), "max_body_mib: 1")


async def normal_request(host: str, port: int) -> None:
    status, body = await exchange(
        host, port, post(CHAT).replace(b"{host}", f"{host}:{port}".encode())
    )
    assert status == 200, body
    assert json.loads(body)["object"] == "chat.completion"


async def test_every_hostile_input_is_an_openai_shaped_4xx_and_the_gateway_keeps_serving(
    gateway: str,
) -> None:
    assert len({h.name for h in HOSTILE}) == len(HOSTILE) >= 30
    parts = urlsplit(gateway)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    for _ in range(20):
        await normal_request(host, port)
    process = psutil.Process()
    rss_start = process.memory_info().rss
    failures = []
    for _round in range(3):  # repeated: memory must not grow with each round
        for hostile in HOSTILE:
            request = hostile.request.replace(b"{host}", f"{host}:{port}".encode())
            status, body = await exchange(host, port, request)
            try:
                assert status == hostile.status, f"status {status}, body {body[:300]!r}"
                assert_openai_error(body, status)
            except (AssertionError, ValueError, KeyError) as exc:
                failures.append(f"{hostile.name}: {exc}")
        if failures:
            break
        await normal_request(host, port)
    assert not failures, "\n".join(failures)
    for _ in range(20):
        await normal_request(host, port)
    rss_end = process.memory_info().rss
    assert rss_end <= rss_start * 1.2, (rss_start, rss_end)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "openai"])
async def test_engine_non_openai_errors_become_openai_errors_keeping_status(
    gateway: str, fault: str
) -> None:
    parts = urlsplit(gateway)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"model": "stub", "fault": fault}).encode()
    status, answer = await exchange(
        host, port, post(body).replace(b"{host}", f"{host}:{port}".encode())
    )
    expected_status, _, said = FAULTS[fault]
    assert status == expected_status
    error = assert_openai_error(answer, status)
    message = str(error["message"])
    assert error["type"] == "upstream_error" and "stub" in message
    assert len(message) < 1000  # a bounded excerpt
    if fault == "html":
        assert "the engine fell over" in message and "<body>" not in message
    elif fault == "empty":
        assert "empty body" in message
    elif fault in ("text", "truncated", "foreign"):
        assert said.decode()[:20] in message


async def test_engine_openai_errors_pass_through_untouched(gateway: str) -> None:
    parts = urlsplit(gateway)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"model": "stub", "fault": "openai"}).encode()
    status, answer = await exchange(
        host, port, post(body).replace(b"{host}", f"{host}:{port}".encode())
    )
    assert status == 400 and answer == FAULTS["openai"][2]


async def test_pipelined_requests_are_answered_in_order(gateway: str) -> None:
    parts = urlsplit(gateway)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    one = post(CHAT).replace(b"{host}", f"{host}:{port}".encode())
    models = f"GET /v1/models HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(one + one + models)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"200", b"400"], answer  # aiohttp's route cannot be pipelined in
    assert b"pipelined" in answer
