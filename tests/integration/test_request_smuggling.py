"""No request smuggling to the engines (issue 19, point 1): a raw upstream logs every
request line it receives; each hostile request target or header sent to the gateway
either gets a 400 or reaches the upstream as exactly one request on the route's own
path. The lean upstream client itself refuses to write an unsafe request line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from sparkstack.gateway.upstream import UnsafeRequestError, request_head
from sparkstack.supervisor.ports import free_port
from tests.integration.conftest import StartGateway

BODY = b'{"model": "stub", "messages": [{"role": "user", "content": "hi"}]}'
ROUTE = "/v1/chat/completions"
ANSWER = json.dumps({"object": "chat.completion", "choices": []}).encode()


class RawUpstream:
    """An HTTP/1.1 server that answers every request with a small JSON body, keeps
    connections alive, and logs each request line exactly as it read it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                self.lines.append(lines[0])
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, str]]:
    upstream = RawUpstream()
    port = free_port()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port)
    yield upstream, f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def send_raw(gateway: str, raw: bytes) -> int:
    """Send bytes as they are on a fresh connection; the status of the first answer."""
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split(b" ")[1])
    finally:
        writer.close()


def request(target: str, extra_headers: bytes = b"", body: bytes = BODY) -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        + extra_headers
        + b"\r\n"
        + body
    )


SMUGGLE = "%20HTTP/1.1%0D%0AHost:%20x%0D%0AContent-Length:%200%0D%0A%0D%0APOST%20/sleep?level=1"
QUERY_PAYLOADS = [
    f"?x{SMUGGLE}",  # the reported one
    "?x=%0D%0APOST%20/sleep",
    "?x=%0APOST%20/sleep",  # bare LF
    "?x=%0D",
    "?x=%00",  # NUL
    "?x=a%20b",  # space
    "?x=%09",  # tab
    "?x=%7F",  # DEL
    "?x=%1B[31m",  # escape
    "?x=" + "a" * 9000,  # overlong
    "?%0D%0AX-Injected:%201=1",  # CRLF in a parameter name
    "?x=%25%30%64",  # double-encoded %0d: harmless text, dropped
    "?x=%E2%80%A8",  # U+2028: not a framing byte, dropped
    "?api-version=2024-01-01",  # an ordinary parameter the engine does not take: dropped
    "?x=1&x=2&y",
]
PATH_PAYLOADS = [
    ROUTE + "%0D%0APOST%20/sleep",
    ROUTE + "%0A",
    ROUTE + "%00",
    ROUTE + "%20HTTP/1.1",
    ROUTE + "/../../sleep",
    "/v1/%2e%2e/sleep",
    "/v1/chat/completions/..%2F..%2Fsleep",
    "http://evil.example" + ROUTE,  # absolute-form: routed on its path only
    ROUTE + "%23%0D%0AX: y",  # an encoded fragment mark hiding a CRLF
    "/" + "a" * 9000,
]
HEADER_PAYLOADS = [
    b"X-Test: a\rb\r\n",  # bare CR inside a value
    b"X-Test: a\x00b\r\n",  # NUL inside a value
    b"X-Test: a\r\n b\r\n",  # obsolete line folding
    b"Content-Length: 999\r\n",  # a second, different Content-Length
    b"Transfer-Encoding: chunked\r\n",  # CL.TE desync
    b"Host: second.example\r\n",  # a second Host
    b"X-Forwarded-For: 127.0.0.1\r\nX-Original-URL: /sleep\r\n",  # routing hints
    b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
]


async def test_every_payload_is_refused_or_one_request_on_the_route(
    start_test_gateway: StartGateway, raw_upstream: tuple[RawUpstream, str]
) -> None:
    upstream, url = raw_upstream
    gateway = await start_test_gateway(url)
    cases = [(ROUTE + q, b"") for q in QUERY_PAYLOADS]
    cases += [(p, b"") for p in PATH_PAYLOADS]
    cases += [(ROUTE, h) for h in HEADER_PAYLOADS]
    assert len(cases) >= 30
    forwarded = 0
    for target, headers in cases:
        before = len(upstream.lines)
        status = await send_raw(gateway, request(target, headers))
        await asyncio.sleep(0.05)  # a smuggled second request would land now
        seen = upstream.lines[before:]
        if status == 400:
            assert seen == [], (target, headers, seen)
        else:
            assert status == 200, (target, headers, status)
            assert seen == [b"POST /v1/chat/completions HTTP/1.1"], (target, headers, seen)
            forwarded += 1
    assert forwarded >= 5  # harmless parameters and routing hints are served normally
    assert all(b"sleep" not in line for line in upstream.lines)


async def test_a_smuggled_pipelined_request_never_reaches_the_engine(
    start_test_gateway: StartGateway, raw_upstream: tuple[RawUpstream, str]
) -> None:
    """A second request hidden after a chunked body is the gateway's own next request
    (here an unknown route), never bytes on the engine's connection."""
    upstream, url = raw_upstream
    gateway = await start_test_gateway(url)
    chunked = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + f"{len(BODY):x}\r\n".encode()
        + BODY
        + b"\r\n0\r\n\r\nPOST /sleep?level=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    assert await send_raw(gateway, chunked) == 200
    await asyncio.sleep(0.1)
    assert upstream.lines == [b"POST /v1/chat/completions HTTP/1.1"]


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/v1/chat/completions\r\nPOST /sleep", {}),
        ("/v1/x y", {}),
        ("/v1/\x00", {}),
        ("v1/no-leading-slash", {}),
        ("/v1/chat/completions", {"X-A": "b\r\nX-Injected: 1"}),
        ("/v1/chat/completions", {"X-A": "b\nc"}),
        ("/v1/chat/completions", {"Bad Name": "x"}),
        ("/v1/chat/completions", {"X-A:": "x"}),
    ],
)
def test_the_lean_client_refuses_to_write_an_unsafe_request(
    target: str, headers: dict[str, str]
) -> None:
    with pytest.raises(UnsafeRequestError):
        request_head("127.0.0.1", 8000, target, 2, headers)


def test_the_lean_client_writes_a_plain_request() -> None:
    head = request_head("127.0.0.1", 8000, ROUTE, 2, {"Authorization": "Bearer k\tx"})
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert head.count(b"\r\n") == 5 and head.endswith(b"\r\n\r\n")
