"""Writing one answer of the lean HTTP/1.1 server (fastserver.py) straight to
its transport: a whole response in one write, or a chunked stream (HTTP/1.0
clients get the stream unframed, ended by closing the connection)."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Protocol

from sparkstack.errors import GatewayError
from sparkstack.gateway.context import JSON, Downstream
from sparkstack.gateway.openai_errors import error_json

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_STREAM = b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"


class Connection(Protocol):
    transport: asyncio.Transport | None
    write_paused: bool

    async def drain(self) -> None: ...


def _head(
    status: int, content_type: str, keep_alive: bool, cors: str | None,
    request_id: str = "", retry_after: int | None = None,
) -> bytes:  # fmt: skip
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n" % (
        status, _REASONS.get(status, b"Unknown"), content_type.encode("latin-1"),
    )  # fmt: skip
    if request_id:
        head += b"x-request-id: %s\r\n" % request_id.encode("latin-1")
    if retry_after is not None:
        head += b"Retry-After: %d\r\n" % retry_after
    if not keep_alive:
        head += b"Connection: close\r\n"
    if cors:
        head += b"Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n" % cors.encode("latin-1")
    return head


def error_answer(error: GatewayError, keep_alive: bool = False) -> bytes:
    body = error_json(error)
    head = _head(error.status, JSON, keep_alive, None, retry_after=error.retry_after)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Answer(Downstream):
    """The response to one request, written straight to the transport."""

    def __init__(self, conn: Connection, keep_alive: bool, http11: bool) -> None:
        self.conn = conn
        self.transport = conn.transport
        self.keep_alive = keep_alive
        self.http11 = http11
        self.chunked = False
        self._started = False
        self.complete = False

    @property
    def started(self) -> bool:
        return self._started

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def send_now(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self._started = self.complete = True
        head = _head(status, content_type, self.keep_alive, self.cors_origin,
                     self.request_id, self.retry_after)  # fmt: skip
        self._write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_now(status, content_type, body)
        await self.conn.drain()

    def start_stream_now(self, status: int, content_type: str) -> None:
        self.status = status
        self._started = True
        if not self.http11:
            self.keep_alive = False  # HTTP/1.0: the stream ends with the connection
        head = _head(status, content_type, self.keep_alive, self.cors_origin, self.request_id)
        if self.http11:
            self.chunked = True
            self._write(head + _STREAM + b"\r\n")
        else:
            self._write(head + b"Cache-Control: no-cache\r\n\r\n")

    async def start_stream(self, status: int, content_type: str) -> None:
        self.start_stream_now(status, content_type)

    def write_now(self, data: bytes) -> None:
        if data:
            self._write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    async def write(self, data: bytes) -> None:
        self.write_now(data)
        if self.conn.write_paused:
            await self.conn.drain()

    def end_now(self) -> None:
        if self.chunked:
            self._write(b"0\r\n\r\n")
        self.complete = True

    async def end(self) -> None:
        self.end_now()
        await self.conn.drain()
