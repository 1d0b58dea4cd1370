"""The hot-path HTTP/1.1 client to engines as an asyncio Protocol over the
``httptools`` response parser: keep-alive connections per host:port, the
request written in one call, the answer parsed in C, and no timer per read (one
sweeper per pool ends answers silent past the read timeout). An answer is told
by callbacks (``UpstreamAnswer``): buffered for a coroutine that awaits it
(``FastUpstreamResponse``, the response interface of upstream.py, whose
asyncio-streams client it replaces on the hot path), or relayed straight to the
client from the callbacks themselves (gateway/direct_relay.py).

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
        self.response: UpstreamAnswer | None = None

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
            response.keep_alive = False
            response.fail(UpstreamBrokenError(f"the engine's answer is not HTTP/1.1 ({exc})"))
            self.close()
        # Told after the parser returned: the answer may hand this connection on.
        if response.complete and not response.told_complete:
            response.told_complete = True
            response.on_complete()

    def eof_received(self) -> bool | None:
        return None

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        name = name.lower()
        if name == b"content-type":
            response.content_type = value.decode("latin-1")
        elif name == b"content-length" or name == b"transfer-encoding":
            response.framed = True

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        response.headed = True
        response.on_head()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.on_chunk(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response.complete = True


class UpstreamAnswer:
    """One request to an engine and its answer on a pooled connection, told by
    callbacks as it arrives: ``on_head``, ``on_chunk`` per piece of body,
    ``on_complete`` at its end, or ``on_error`` once when it cannot end well. The
    answer hands its connection back (``release``) or drops it (``close``).

    Subclasses decide what the callbacks do: ``FastUpstreamResponse`` buffers for
    a coroutine that awaits it; the gateway's direct relay writes straight to the
    client."""

    __slots__ = (
        "status", "content_type", "framed", "headed", "keep_alive", "received", "complete",
        "told_complete", "error", "last_read", "done", "request", "key", "reused", "pool",
        "conn", "connecting",
    )  # fmt: skip

    def __init__(self) -> None:
        self.status = 0
        self.content_type = "application/json"
        self.framed = False
        """The body has a length or chunks (otherwise it ends with the connection)."""
        self.headed = False
        self.keep_alive = False
        self.received = False
        self.complete = False
        self.told_complete = False
        self.error: BaseException | None = None
        self.last_read = 0.0
        self.done = False
        """Released or closed: the answer has no connection any more."""
        self.request = b""
        self.key = ("", 0)
        self.reused = False
        """Sent on a kept-alive connection (which the engine may have closed meanwhile)."""
        self.pool: FastUpstreamPool | None = None
        self.conn: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None

    def on_head(self) -> None:
        """Status and headers are in."""

    def on_chunk(self, body: bytes) -> None:
        """A piece of the body, as it arrived."""

    def on_complete(self) -> None:
        """The body ended."""

    def on_error(self, error: BaseException) -> None:
        """The answer cannot end well (no engine, a break, a timeout); told once."""

    def fail(self, error: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = error
            self.on_error(error)

    def ended(self, exc: Exception | None) -> None:
        """The connection closed: the end of a close-delimited body, a stale
        kept-alive connection (sent again on another), or a break."""
        if self.complete:
            return
        if self.headed and not self.framed:
            self.complete = self.told_complete = True
            self.keep_alive = False
            self.on_complete()
        elif not self.received and self.reused and self.pool is not None and not self.done:
            self.conn = None
            self.pool.dispatch(self)
        elif not self.received:
            self.fail(UpstreamConnectError("the engine closed the connection"))
        else:
            self.fail(UpstreamBrokenError("the engine closed the connection mid-answer"))

    def release(self) -> None:
        """The answer was read to its end: its connection may serve the next one."""
        self.done = True
        conn = self.conn
        if conn is None:
            return
        conn.response = None
        if self.keep_alive:
            conn.pool.release(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection unless the answer was read to its end (a request
        still on its way is abandoned)."""
        if self.done:
            return
        self.done = True
        if self.connecting is not None:
            self.connecting.cancel()
        conn = self.conn
        if conn is not None:
            conn.response = None
            conn.close()


class FastUpstreamResponse(UpstreamAnswer):
    """An answer awaited by a coroutine: ``head``, then ``read`` or ``iter_chunks``."""

    __slots__ = ("loop", "head", "chunks", "size", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.head: asyncio.Future[None] = loop.create_future()
        self.chunks: list[bytes] = []
        self.size = 0
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def on_head(self) -> None:
        if not self.head.done():
            self.head.set_result(None)

    def on_chunk(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)
        self.wake()
        conn = self.conn
        if self.size > _PAUSE_AT and conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def on_complete(self) -> None:
        self.wake()

    def on_error(self, error: BaseException) -> None:
        if not self.head.done():
            self.head.set_exception(error)
        self.wake()

    def _take(self) -> bytes:
        """Everything received so far, as one piece; reading resumes (it pauses
        past ``_PAUSE_AT`` unread bytes)."""
        chunks, self.chunks, self.size = self.chunks, [], 0
        conn = self.conn
        if conn is not None and conn.transport is not None and not conn.lost:
            conn.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def read(self) -> bytes:
        if self.complete and not self.done:  # the usual case: it came with its head
            body = self._take() if self.chunks else b""
            self.release()
            return body
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything already received is yielded at once."""
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
            self._waiter = self.loop.create_future()
            await self._waiter
            self._waiter = None
        self.release()


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

    def send(
        self,
        answer: UpstreamAnswer,
        base_url: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        request_id: str = "",
    ) -> None:
        """Send a POST; ``answer``'s callbacks get the engine's answer (or why there
        is none). ``headers``: the engine's own (one checked block per engine);
        ``request_id``: this request's x-request-id (none when empty). Raises
        only the 400 for a path or id that would change the request's framing,
        before anything is sent."""
        if _UNSAFE.search(path) or _UNSAFE.search(request_id):
            check_request(path, {"x-request-id": request_id})
        key = self.target(base_url)
        block = self._head_block(key, headers)
        if request_id:
            block += b"x-request-id: %s\r\n" % request_id.encode("latin-1")
        answer.request = b"POST %s HTTP/1.1\r\n%bContent-Length: %d\r\n\r\n%b" % (
            path.encode("latin-1"), block, len(body), body,
        )  # fmt: skip
        answer.key = key
        answer.pool = self
        self.dispatch(answer)

    def dispatch(self, answer: UpstreamAnswer) -> None:
        """Write the answer's request on an idle kept-alive connection, or on a new
        one once it is open."""
        idle = self._idle.get(answer.key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                answer.reused = True
                self._bind(conn, answer)
                return
        answer.reused = False
        answer.connecting = self.loop.create_task(self._connect_for(answer))

    async def _connect_for(self, answer: UpstreamAnswer) -> None:
        try:
            conn = await self._connect(answer.key)
        except UpstreamConnectError as exc:
            answer.connecting = None
            answer.fail(exc)
            return
        answer.connecting = None
        if answer.done:
            self.release(conn)
        else:
            self._bind(conn, answer)

    def _bind(self, conn: _Connection, answer: UpstreamAnswer) -> None:
        conn.response = answer
        answer.conn = conn
        answer.last_read = self.loop.time()
        self._busy.add(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(_SWEEP, self._sweep)
        assert conn.transport is not None
        conn.transport.write(answer.request)

    async def post(
        self,
        base_url: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        request_id: str = "",
    ) -> FastUpstreamResponse:
        """The engine's answer once its head is in (see ``send``)."""
        response = FastUpstreamResponse(self.loop)
        self.send(response, base_url, path, body, headers, request_id)
        try:
            await response.head
        except BaseException:
            response.close()
            raise
        return response
