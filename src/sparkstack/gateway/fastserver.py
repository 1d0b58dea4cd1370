"""The gateway's HTTP/1.1 server: an asyncio Protocol over ``httptools`` (the C
parser uvicorn uses) that serves the forwarded POST routes itself and hands any
other request, with the bytes received for it, to aiohttp's own protocol on the
same socket (admin, model list, health, metrics; the connection stays aiohttp's
from then on).

Why: aiohttp's server machinery (request objects, multidicts, payload streams,
response objects) cost about half of the gateway's CPU per forwarded request;
here a request is a few header lookups and one write per answer.

It also owns the client-side limits: a connection must send its headers within
``gateway.client_header_timeout`` and its body within ``client_body_timeout``,
an idle keep-alive connection is closed after ``client_idle_timeout``, and
beyond ``gateway.max_connections`` open connections a new one gets a 503.
Everything it refuses is an OpenAI-shaped JSON error, sent with
``Connection: close`` when the rest of the request cannot be trusted.

Pipelining: pipelined forwarded requests are answered in order; a pipelined
request for an aiohttp route (its first bytes in the same read as the end of
the previous request) is refused with a 400, as its start cannot be found.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
from aiohttp import web

from sparkstack.engines.registry import forwarded_routes
from sparkstack.errors import GatewayError
from sparkstack.gateway.app import FORWARDER_KEY, GUARD_KEY, SPEC_KEY
from sparkstack.gateway.context import RequestContext
from sparkstack.gateway.direct_relay import DirectRelay
from sparkstack.gateway.fastanswer import Answer, error_answer
from sparkstack.gateway.guard import check_duplicates
from sparkstack.gateway.openai_errors import bad_header, timed_out, too_large
from sparkstack.gateway.request_target import check_target

log = logging.getLogger("sparkstack.gateway")

MAX_HEAD = 65536
MAX_HEADERS = 128
_BACKLOG = 65536
_LINGER = 2.0
_SWEEP = 0.25
_UNIQUE = frozenset({b"authorization", b"content-type", b"content-length", b"host", b"origin"})


class _Stop(Exception):
    """Parsing ends here: the request was refused or goes to aiohttp."""


@dataclass(slots=True)
class _Incoming:
    url: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    duplicate: bytes | None = None
    head_size: int = 0
    head_done: bool = False
    body: list[bytes] = field(default_factory=list)
    body_size: int = 0
    keep_alive: bool = True
    http11: bool = True
    path: str = ""
    query: str = ""
    cors: str | None = None
    armed: int = 0
    """The timeout armed for it: 1 its headers', 2 its body's (only once each, and
    only when it did not arrive whole in one read)."""


class GatewayServer:
    """The listening socket and every client connection of one gateway."""

    def __init__(self, app: web.Application) -> None:
        self.forwarder = app[FORWARDER_KEY]
        self.guard = app[GUARD_KEY]
        self.spec = spec = app[SPEC_KEY]
        self.max_body = self.forwarder.max_body
        self.routes = frozenset(forwarded_routes())
        self.connections: set[GatewayProtocol] = set()
        self.open = 0
        """Open client connections, those handed to aiohttp included."""
        self.runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True,
            keepalive_timeout=spec.client_idle_timeout,
        )  # fmt: skip
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def _sweep(self) -> None:
        """Run each connection's timeout once its deadline passed (checked every
        ``_SWEEP`` seconds: one timer for all connections instead of one per request)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP)
            now = loop.time()
            for conn in [c for c in self.connections if 0 < c.deadline <= now]:
                conn.deadline = 0.0
                conn.on_deadline()

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: GatewayProtocol(self), host, port, backlog=backlog, reuse_address=True
            )
        except OSError:
            await self.runner.cleanup()
            raise
        self._sweeper = loop.create_task(self._sweep())

    def aiohttp_protocol(self) -> asyncio.Protocol:
        server = self.runner.server
        assert server is not None
        return _HandedOff(server(), self)

    async def cleanup(self) -> None:
        """Stop listening, end this server's connections, then aiohttp's."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.shutdown()
        await self.runner.cleanup()


class _HandedOff(asyncio.Protocol):
    """aiohttp's protocol for a handed-off connection, counted while it is open."""

    def __init__(self, inner: asyncio.Protocol, server: GatewayServer) -> None:
        self.inner = inner
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open -= 1
        self.inner.connection_lost(exc)


class GatewayProtocol(asyncio.Protocol):
    """One client connection, parsed with httptools until (unless) handed off."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.spec = server.spec
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Incoming | None = None
        self.queue: deque[_Incoming] = deque()
        self.task: asyncio.Task[None] | None = None
        self.relay: DirectRelay | None = None
        """The request being relayed from the engine's callbacks (no task)."""
        self.deadline = 0.0
        """loop.time() past which ``on_deadline`` runs (0: none); one sweeper checks all."""
        self.on_deadline: Callable[[], None] = self._idle_timeout
        self.feed: bytes = b""
        self.completed_in_feed = False
        self.raw: list[bytes] | None = None
        """The bytes of the request being parsed since its start, for a hand-off."""
        self.handing_off = False
        self.backlog: list[bytes] = []
        self.backlog_size = 0
        self.dead = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None

    # -- connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        server = self.server
        server.open += 1
        server.connections.add(self)
        if server.open > self.spec.max_connections:
            self._refuse(
                GatewayError(
                    f"The gateway has {server.open - 1} open client connections, its "
                    "limit (gateway.max_connections); retry shortly.",
                    status=503, error_type="server_overloaded", code="too_many_connections",
                )
            )  # fmt: skip
            return
        self._arm(self.spec.client_header_timeout, self._idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open -= 1
        self.server.connections.discard(self)
        self.dead = True
        self._disarm()
        if self.task is not None:
            self.task.cancel()
        if self.relay is not None:
            self.relay.cancel()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close; a running request is cancelled by connection_lost

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.resume()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.dead:
            self.drained = self.loop.create_future()
            await self.drained

    @property
    def busy(self) -> bool:
        """A request is being answered (later ones wait their turn)."""
        return self.task is not None or self.relay is not None

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.relay is not None:
            self.relay.cancel()
        if self.transport is not None:
            self.transport.close()

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self.deadline = self.loop.time() + seconds
        self.on_deadline = callback

    def _disarm(self) -> None:
        self.deadline = 0.0

    def _idle_timeout(self) -> None:
        if self.current is not None:
            self._refuse(timed_out("its request headers", self.spec.client_header_timeout,
                                   "client_header_timeout"))  # fmt: skip
        elif not self.busy and not self.queue and self.transport is not None:
            self.transport.close()

    def _body_timeout(self) -> None:
        self._refuse(timed_out("its request body", self.spec.client_body_timeout,
                               "client_body_timeout"))  # fmt: skip

    def _refuse(self, error: GatewayError) -> None:
        """Answer an error and close: what follows on the connection is not trusted."""
        self.dead = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(error_answer(error))
            # Close only after the client stopped sending (bounded): closing with its
            # bytes unread would reset the connection and lose the answer on the way.
            transport.write_eof()
            self._arm(_LINGER, transport.close)
        else:
            self._disarm()

    # -- input -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        if self.handing_off:
            if self.raw is not None:  # None: a pipelined hand-off, refused when its turn comes
                self.raw.append(data)
            return
        if self.busy:  # early or pipelined bytes: parsed after the answer
            self.backlog.append(data)
            self.backlog_size += len(data)
            if self.backlog_size > _BACKLOG and self.transport is not None:
                self.transport.pause_reading()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        current = self.current
        if current is not None and not current.head_done and self.raw is not None:
            self.raw.append(data)
        self.feed = data
        self.completed_in_feed = False
        try:
            self.parser.feed_data(data)
        except _Stop:
            pass
        except httptools.HttpParserUpgrade:
            self._hand_off_or_refuse()
        except httptools.HttpParserError as exc:
            if not self.dead and not self.handing_off:
                self._refuse(bad_header(f"The request is not valid HTTP/1.1 ({exc})."))
        except Exception as exc:  # a callback's own error, already answered when dead
            if not self.dead and not self.handing_off:
                log.exception("gateway: parsing a request failed")
                self._refuse(bad_header(f"The request could not be parsed ({exc})."))
        self.feed = b""
        current = self.current
        if current is not None and not self.dead and not self.handing_off:
            self._arm_for(current)
        if self.handing_off and not self.busy and not self.queue:
            self._hand_off()
        elif self.queue and not self.busy:
            self._start(self.queue.popleft())

    def _arm_for(self, current: _Incoming) -> None:
        """A request still arriving after a read: its headers', then its body's
        timeout, each counted from the first read that left it unfinished."""
        if not current.head_done:
            if current.armed < 1:
                current.armed = 1
                self._arm(self.spec.client_header_timeout, self._idle_timeout)
        elif current.armed < 2:
            current.armed = 2
            self._arm(self.spec.client_body_timeout, self._body_timeout)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.current = _Incoming()
        self.raw = None if self.completed_in_feed else [self.feed]

    def _headers_too_large(self) -> None:
        self._refuse(
            bad_header(
                f"The request headers are larger than {MAX_HEAD} bytes or {MAX_HEADERS} fields.",
                status=431,
                code="headers_too_large",
            )
        )
        raise _Stop

    def on_url(self, url: bytes) -> None:
        current = self.current
        assert current is not None
        current.url += url
        current.head_size += len(url)
        if current.head_size > MAX_HEAD:
            self._headers_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        current = self.current
        assert current is not None
        headers = current.headers
        current.head_size += len(name) + len(value) + 4
        if current.head_size > MAX_HEAD or len(headers) > MAX_HEADERS:
            self._headers_too_large()
        name = name.lower()
        if name in headers and name in _UNIQUE:
            current.duplicate = name
        headers[name] = value

    def on_headers_complete(self) -> None:
        current = self.current
        assert current is not None
        current.head_done = True
        parser = self.parser
        path, _, query = current.url.partition(b"?")
        current.path = path.decode("latin-1")
        if parser.get_method() != b"POST" or current.path not in self.server.routes:
            self.handing_off = True
            self._disarm()
            raise _Stop
        self.raw = None
        current.query = query.decode("latin-1")
        current.keep_alive = parser.should_keep_alive()
        current.http11 = parser.get_http_version() == "1.1"
        headers = current.headers
        try:
            if query:
                check_target(current.url.decode("latin-1"))  # smuggling in the query: a 400
            if current.duplicate is not None:
                raise check_duplicates(current.duplicate.decode().title())
            host = headers.get(b"host")
            origin = headers.get(b"origin")
            current.cors = self.server.guard.check(
                host.decode("latin-1") if host is not None else None,
                origin.decode("latin-1") if origin is not None else None,
                current.path,
            )
            length = headers.get(b"content-length")
            if length is not None and int(length) > self.server.max_body:
                raise too_large(self.server.max_body)
        except GatewayError as exc:
            self._refuse(exc)
            raise _Stop from exc
        if headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        current = self.current
        assert current is not None
        current.body_size += len(body)
        if current.body_size > self.server.max_body:
            self._refuse(too_large(self.server.max_body))
            raise _Stop
        current.body.append(body)

    def on_message_complete(self) -> None:
        current = self.current
        assert current is not None
        self.current = None
        self.completed_in_feed = True
        self._disarm()
        if not self.busy and not self.queue:
            self._start(current)
            if self.dead:
                raise _Stop  # refused and closed: nothing after it is read
        else:
            self.queue.append(current)

    # -- hand-off to aiohttp -----------------------------------------------------

    def _hand_off_or_refuse(self) -> None:
        self.handing_off = True
        if self.raw is None:
            self.handing_off = False
            self._refuse(
                bad_header(
                    "A pipelined request for this route cannot be served; send it after "
                    "the previous answer or on its own connection."
                )
            )

    def _hand_off(self) -> None:
        """Give the connection, with the bytes of the request that began the
        hand-off, to aiohttp's protocol."""
        if self.raw is None:
            self._hand_off_or_refuse()
            return
        transport = self.transport
        assert transport is not None
        raw = b"".join(self.raw)
        self.raw = None
        self.dead = True
        self.server.connections.discard(self)
        protocol = self.server.aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.write_paused:
            protocol.pause_writing()
        protocol.data_received(raw)

    # -- answering -------------------------------------------------------------

    def _start(self, incoming: _Incoming) -> None:
        headers = incoming.headers
        content_type = headers.get(b"content-type")
        authorization = headers.get(b"authorization")
        priority = headers.get(b"x-sparkstack-priority")
        request_id = headers.get(b"x-request-id")
        body = incoming.body[0] if len(incoming.body) == 1 else b"".join(incoming.body)
        ctx = RequestContext(
            path=incoming.path,
            query=incoming.query,
            body=body,
            authorization=authorization.decode("latin-1") if authorization is not None else None,
            content_type=content_type.decode("latin-1") if content_type is not None else None,
            priority=priority.decode("latin-1") if priority is not None else None,
            request_id=request_id.decode("latin-1") if request_id is not None else "",
        )
        down = Answer(self, incoming.keep_alive, incoming.http11)
        down.cors_origin = incoming.cors
        try:
            started = self.server.forwarder.start(ctx, down, lambda: self._relayed(down))
        except Exception:
            log.exception("gateway: answering %s failed", incoming.path)
            self._failed(down)
            self._next(False)
            return
        if started is None:
            self._next(down.keep_alive and down.complete)
        elif isinstance(started, DirectRelay):
            if not started.finished:
                self.relay = started
        else:
            self.task = self.loop.create_task(self._answer(incoming, started, down))

    def _relayed(self, down: Answer) -> None:
        """The direct relay of ``down``'s request is done."""
        self.relay = None
        if self.write_paused and not self.dead:
            self.task = self.loop.create_task(self._drained(down))
        else:
            self._next(down.keep_alive and down.complete)

    async def _drained(self, down: Answer) -> None:
        try:
            await self.drain()
        finally:
            self.task = None
        self._next(down.keep_alive and down.complete)

    def _failed(self, down: Answer) -> None:
        """A bug in answering: a 500 if nothing went out yet; the connection ends."""
        if not down.started:
            down.send_error_now(GatewayError(
                "The gateway failed on this request; see its log.", status=500,
                error_type="server_error", code="internal_error",
            ))  # fmt: skip
        down.keep_alive = False

    async def _answer(
        self, incoming: _Incoming, rest: Coroutine[Any, Any, None], down: Answer
    ) -> None:
        try:
            await rest
            await self.drain()  # the client takes the answer before the next is read
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("gateway: answering %s failed", incoming.path)
            self._failed(down)
        finally:
            self.task = None
        self._next(down.keep_alive and down.complete)

    def _next(self, keep_alive: bool) -> None:
        transport = self.transport
        if self.dead or transport is None:
            return
        if not keep_alive:
            self.dead = True
            transport.close()
            return
        if self.queue:
            self._start(self.queue.popleft())
            return
        if self.handing_off:
            self._hand_off()
            return
        self._arm(self.spec.client_idle_timeout, self._idle_timeout)
        if self.backlog:
            backlog, self.backlog, self.backlog_size = self.backlog, [], 0
            transport.resume_reading()
            for data in backlog:
                if self.dead or self.handing_off or self.busy:
                    self.data_received(data)
                else:
                    self._feed(data)
