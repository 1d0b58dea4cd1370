"""The hot-path HTTP/1.1 client to engines as an asyncio Protocol over the
``httptools`` response parser: keep-alive connections per host:port, the
request written in one call, the answer parsed in C, and no timer per read (one
sweeper per pool ends answers silent past the read timeout). Same response
interface as upstream.py, whose asyncio-streams client it replaces on the hot
path (streams cost a timeout object and a wake-up per read).

A response not read to its end closes its connection, so a cancelled request
(client gone) aborts the engine's work at once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from sparkstack.gateway.openai_errors import bad_request
from sparkstack.gateway.upstream import UpstreamBrokenError, UpstreamConnectError

_SWEEP = 1.0
_PAUSE_AT = 1 << 20
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
"""Bytes that could end or split a request line or header: never sent."""


def check_request(path: str, headers: dict[str, str]) -> None:
    """A 400 for a path or header that would change the request's framing."""
    if _UNSAFE.search(path):
        raise bad_request(f"The request path or query has a control byte or space: {path[:80]!r}.")
    for name, value in headers.items():
        if _UNSAFE.search(name) or _UNSAFE.search(value.replace(" ", "")):
            raise bad_request(f"The header {name[:40]!r} for the engine has a control byte.")


class _Connection(asyncio.Protocol):
    def __init__(self, pool: FastUpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.response: FastUpstreamResponse | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        response = self.response
        if response is not None:
            response.ended(exc)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.close()  # bytes nobody asked for: the connection is not trusted
            return
        response.last_read = self.loop.time()
        response.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(UpstreamBrokenError(f"the engine's answer is not HTTP/1.1 ({exc})"))
            self.close()

    def eof_received(self) -> bool | None:
        return None

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        if not response.head.done():
            response.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.chunks.append(body)
        response.size += len(body)
        response.wake()
        if response.size > _PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response.complete = True
        response.wake()


class FastUpstreamResponse:
    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head: asyncio.Future[None] = conn.loop.create_future()
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: BaseException | None = None
        self.last_read = conn.loop.time()
        self._waiter: asyncio.Future[None] | None = None
        self._done = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = error
        if not self.head.done():
            self.head.set_exception(error)
        self.wake()

    def ended(self, exc: Exception | None) -> None:
        """The connection closed: the end of a close-delimited body, or a break."""
        framed = "content-length" in self.headers or "transfer-encoding" in self.headers
        if self.head.done() and not framed and not self.complete:
            self.complete = True
            self.keep_alive = False
            self.wake()
            return
        if not self.received:
            self.fail(UpstreamConnectError("the engine closed the connection"))
        else:
            self.fail(UpstreamBrokenError("the engine closed the connection mid-answer"))

    def _take(self) -> bytes:
        """Everything received so far, as one piece; reading resumes (it pauses
        past ``_PAUSE_AT`` unread bytes)."""
        chunks, self.chunks, self.size = self.chunks, [], 0
        conn = self._conn
        if conn.transport is not None and not conn.lost:
            conn.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def read(self) -> bytes:
        if self.complete and not self._done:  # the usual case: it came with its head
            body = self._take() if self.chunks else b""
            self._finish()
            return body
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything already received is yielded at once."""
        conn = self._conn
        while True:
            if self.chunks:
                yield self._take()
                continue
            if self.complete:
                break
            if self.error is not None:
                if isinstance(self.error, TimeoutError | UpstreamBrokenError):
                    raise self.error
                raise UpstreamBrokenError(str(self.error))
            self._waiter = conn.loop.create_future()
            await self._waiter
            self._waiter = None
        self._finish()

    def _finish(self) -> None:
        """The answer was read to its end: its connection may serve the next one."""
        conn = self._conn
        self._done = True
        conn.response = None
        if self.keep_alive:
            conn.pool.release(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection unless the response was read to its end."""
        if not self._done:
            self._done = True
            self._conn.response = None
            self._conn.close()


class FastUpstreamPool:
    def __init__(self, connect_timeout: float, read_timeout: float, max_idle: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._targets: dict[str, tuple[str, int]] = {}
        self._blocks: dict[tuple[object, ...], bytes] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def target(self, base_url: str) -> tuple[str, int]:
        key = self._targets.get(base_url)
        if key is None:
            parts = urlsplit(base_url)
            key = self._targets[base_url] = (parts.hostname or "127.0.0.1", parts.port or 80)
        return key

    def _sweep(self) -> None:
        """End answers silent for longer than the read timeout."""
        self._sweeper = None
        now = self.loop.time()
        for conn in list(self._busy):
            response = conn.response
            if response is not None and now - response.last_read > self.read_timeout:
                response.fail(TimeoutError(f"no byte from the engine in {self.read_timeout:g} s"))
                conn.close()
        if self._busy:
            self._sweeper = self.loop.call_later(_SWEEP, self._sweep)

    def forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        idle = self._idle.setdefault(conn.key, [])
        if conn.usable() and len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        """Close every connection (on gateway shutdown)."""
        for conn in [c for idle in self._idle.values() for c in idle] + list(self._busy):
            conn.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        conn = _Connection(self, key)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(lambda: conn, key[0], key[1])
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"{key[0]}:{key[1]}: {exc}") from exc
        return conn

    def _head_block(self, key: tuple[str, int], headers: dict[str, str]) -> bytes:
        """The request's fixed header lines, checked and encoded once per distinct
        set (an engine's headers are the same for every request)."""
        items = (key, *headers.items())
        block = self._blocks.get(items)
        if block is None:
            check_request("/", headers)
            lines = [f"Host: {key[0]}:{key[1]}\r\n"]
            lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
            block = "".join(lines).encode("latin-1")
            if len(self._blocks) >= 256:
                self._blocks.clear()
            self._blocks[items] = block
        return block

    async def post(
        self,
        base_url: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        request_id: str = "",
    ) -> FastUpstreamResponse:
        """``headers``: the engine's own (one checked block per engine);
        ``request_id``: this request's x-request-id (none when empty)."""
        if _UNSAFE.search(path) or _UNSAFE.search(request_id):
            check_request(path, {"x-request-id": request_id})
        key = self.target(base_url)
        block = self._head_block(key, headers)
        if request_id:
            block += b"x-request-id: %s\r\n" % request_id.encode("latin-1")
        request = b"POST %s HTTP/1.1\r\n%bContent-Length: %d\r\n\r\n%b" % (
            path.encode("latin-1"), block, len(body), body,
        )  # fmt: skip
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.usable():
                continue
            try:
                return await self._exchange(conn, request)
            except UpstreamConnectError:
                conn.close()  # a stale keep-alive connection: try a fresh one
        return await self._exchange(await self._connect(key), request)

    async def _exchange(self, conn: _Connection, request: bytes) -> FastUpstreamResponse:
        response = conn.response = FastUpstreamResponse(conn)
        self._busy.add(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(_SWEEP, self._sweep)
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            await response.head
        except BaseException:
            conn.response = None
            conn.close()
            raise
        return response
