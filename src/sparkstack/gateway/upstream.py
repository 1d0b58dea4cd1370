"""A lean HTTP/1.1 client for the hot path: keep-alive connections to engines,
one idle list per host:port, request written in one call, responses framed by
Content-Length, chunked encoding, or connection close.

aiohttp's client cost about a quarter of the gateway's CPU per request
(py-spy); the engines speak plain HTTP/1.1 on loopback, which needs little.
A response not read to its end closes its connection, so a cancelled request
(client gone) aborts the engine's work at once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_READ_SIZE = 65536
_MAX_HEADER = 65536


class UpstreamConnectError(ConnectionError):
    """The engine could not be reached (refused, reset before any response)."""


class UpstreamBrokenError(ConnectionError):
    """The engine closed the connection in the middle of a response."""


class UnsafeRequestError(ValueError):
    """A request line or header that would break HTTP framing (CR, LF, NUL, other
    control bytes, or a space in the target): never written to an engine."""


_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f-\xff]")
_UNSAFE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def request_head(host: str, port: int, target: str, length: int, headers: dict[str, str]) -> bytes:
    """The request line and headers of a POST, refusing anything that could smuggle a
    second request onto the connection (RFC 9112 §3 and §5)."""
    if not target.startswith("/") or _UNSAFE_TARGET.search(target):
        raise UnsafeRequestError(f"unsafe request target {target!r}")
    for name, value in headers.items():
        if not _TOKEN.match(name) or _UNSAFE_HEADER.search(value):
            raise UnsafeRequestError(f"unsafe header {name!r}")
    head = [f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in headers.items()]
    head.append("\r\n")
    return "".join(head).encode("latin-1")


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoding (RFC 9112 §7.1). Engines
    send no trailers: after the last chunk only its CRLF remains (``leftover``)."""

    def __init__(self) -> None:
        self.leftover = b""
        self._remaining = 0  # data bytes left in the current chunk; 0: a size line is next
        self._need_crlf = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buffer = self.leftover + data
        out: list[bytes] = []
        while not self.done:
            if self._need_crlf:
                if len(buffer) < 2:
                    break
                buffer = buffer[2:]
                self._need_crlf = False
            elif self._remaining == 0:
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(buffer[:end].split(b";", 1)[0], 16)
                buffer = buffer[end + 2 :]
                if size == 0:
                    self.done = True
                else:
                    self._remaining = size
            else:
                take = buffer[: self._remaining]
                if not take:
                    break
                out.append(take)
                buffer = buffer[len(take) :]
                self._remaining -= len(take)
                self._need_crlf = self._remaining == 0
        self.leftover = buffer
        return b"".join(out)


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    _conn: _Conn
    _pool: UpstreamPool
    _key: tuple[str, int]
    _length: int | None
    _chunked: bool
    _timeout: float
    _done: bool = field(default=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything already received is yielded at once
        (chunked framing removed), so a burst of SSE events is one write downstream."""
        reader = self._conn.reader
        decoder = ChunkedDecoder() if self._chunked else None
        left = self._length
        try:
            while decoder is None or not decoder.done:
                if left == 0:
                    break
                async with asyncio.timeout(self._timeout):
                    data = await reader.read(_READ_SIZE if left is None else min(left, _READ_SIZE))
                if not data:
                    if decoder is None and left is None:
                        self._conn.close()  # close-delimited body: the end
                        self._done = True
                        return
                    raise UpstreamBrokenError("the engine closed the connection mid-body")
                if decoder is not None:
                    data = decoder.feed(data)
                elif left is not None:
                    left -= len(data)
                if data:
                    yield data
            if decoder is not None and len(decoder.leftover) < 2:
                await reader.readexactly(2 - len(decoder.leftover))  # the last CRLF
        except asyncio.IncompleteReadError as exc:
            raise UpstreamBrokenError("the engine closed the connection mid-body") from exc
        except (ConnectionError, ValueError) as exc:
            raise UpstreamBrokenError(str(exc)) from exc
        self._done = True
        self._pool.release(self._key, self._conn)

    def close(self) -> None:
        """Drop the connection unless the response was read to its end."""
        if not self._done:
            self._done = True
            self._conn.close()


class UpstreamPool:
    def __init__(self, connect_timeout: float, read_timeout: float, max_idle: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._targets: dict[str, tuple[tuple[str, int], str]] = {}

    def target(self, base_url: str) -> tuple[tuple[str, int], str]:
        """(host, port) and the path prefix of ``base_url`` (e.g. ``/proxy`` for an
        external upstream at ``http://host/proxy/v1``)."""
        found = self._targets.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http":
                raise UpstreamConnectError(f"{base_url}: only http:// upstreams use the fast path")
            key = (parts.hostname or "127.0.0.1", parts.port or 80)
            found = self._targets[base_url] = (key, parts.path.rstrip("/"))
        return found

    async def close(self) -> None:
        """Close every idle connection (on gateway shutdown)."""
        conns = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                await conn.writer.wait_closed()
            except ConnectionError:
                pass

    def release(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if conn.usable() and len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: tuple[str, int]) -> _Conn:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=_MAX_HEADER)
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"{key[0]}:{key[1]}: {exc}") from exc
        return _Conn(reader, writer)

    async def post(
        self, base_url: str, path: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        key, prefix = self.target(base_url)
        request = request_head(key[0], key[1], prefix + path, len(body), headers) + body
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.usable():
                conn.close()
                continue
            try:
                return await self._exchange(key, conn, request)
            except UpstreamConnectError:
                conn.close()  # a stale keep-alive connection: try a fresh one
        return await self._exchange(key, await self._connect(key), request)

    async def _exchange(
        self, key: tuple[str, int], conn: _Conn, request: bytes
    ) -> UpstreamResponse:
        try:
            conn.writer.write(request)
            async with asyncio.timeout(self.read_timeout):
                head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            conn.close()
            if not exc.partial:  # nothing came back: a stale keep-alive connection
                raise UpstreamConnectError("the engine closed the connection") from exc
            raise UpstreamBrokenError("the engine closed the connection mid-answer") from exc
        except (ConnectionError, asyncio.LimitOverrunError) as exc:
            conn.close()
            raise UpstreamConnectError(str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status in (204, 304) or status < 200:
            length, chunked = "0", False
        return UpstreamResponse(
            status=status, headers=headers, _conn=conn, _pool=self, _key=key,
            _length=int(length) if length is not None and not chunked else None,
            _chunked=chunked, _timeout=self.read_timeout,
        )  # fmt: skip
