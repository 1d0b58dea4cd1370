"""The gateway's access log: one JSON object per request (time, request id,
method, path, model, key name - never the key -, status, bytes, duration,
time to first byte for streams, upstream) appended to ``logs/gateway.jsonl``
in the state dir.

It must cost almost nothing on the hot path: a request appends one tuple to an
in-memory list; a background task turns the list into lines every
``FLUSH_S`` (or sooner when it is long) and appends them to the file in a
worker thread. The file is rotated to ``gateway.jsonl.1`` past ``ROTATE_BYTES``.

Also here: the aiohttp middleware that gives the routes aiohttp serves (model
list, admin, health, metrics) a request id and a line of their own; forwarded
requests get theirs from ``Forwarder.serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sparkstack.gateway.context import Downstream, RequestContext
from sparkstack.gateway.request_id import accept_request_id

log = logging.getLogger("sparkstack.gateway")

FLUSH_S = 0.5
FLUSH_AT = 4096
"""Entries that make the flusher run before its interval is over."""
MAX_BUFFERED = 200_000
"""Entries held while the file cannot keep up; beyond, new ones are counted and dropped."""
ROTATE_BYTES = 64 * 2**20
_FORMAT_BATCH = 2048
"""Entries formatted between yields to the event loop."""

REQUEST_ID = web.RequestKey("request_id", str)
KEY_NAME = web.RequestKey("key_name", str)


class AccessEntry(NamedTuple):
    """One request, as recorded on the hot path (formatted later, off it). The hot
    path appends the plain tuple (half the cost); the flush reads it as this."""

    time: float
    request_id: str
    method: str
    path: str
    model: str
    key: str | None
    status: int
    bytes: int
    duration_s: float
    ttft_s: float | None
    upstream: str


def _stamp(seconds: float, cache: dict[int, str]) -> str:
    whole = int(seconds)
    prefix = cache.get(whole)
    if prefix is None:
        cache.clear()
        prefix = cache[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{prefix}.{int((seconds - whole) * 1000):03d}Z"


def _text(value: str | None) -> str:
    return _quote(value) if value else "null"


def format_entry(entry: AccessEntry, stamps: dict[int, str]) -> str:
    ttft = f"{entry.ttft_s * 1000:.1f}" if entry.ttft_s is not None else "null"
    return (
        f'{{"time":"{_stamp(entry.time, stamps)}","request_id":{_quote(entry.request_id)},'
        f'"method":{_quote(entry.method)},"path":{_quote(entry.path)},'
        f'"model":{_text(entry.model)},"key":{_text(entry.key)},"status":{entry.status},'
        f'"bytes":{entry.bytes},"duration_ms":{entry.duration_s * 1000:.1f},'
        f'"ttft_ms":{ttft},"upstream":{_text(entry.upstream)}}}\n'
    )


class AccessLog:
    def __init__(self, path: Path, flush_s: float = FLUSH_S) -> None:
        self.path = path
        self.flush_s = flush_s
        self.buffer: list[tuple[Any, ...]] = []
        self.dropped = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    # hot path ------------------------------------------------------------------
    def add(self, entry: tuple[Any, ...]) -> None:
        """Record an ``AccessEntry`` (or the plain tuple of its fields)."""
        buffer = self.buffer
        if len(buffer) >= MAX_BUFFERED:
            self.dropped += 1
            return
        buffer.append(entry)
        if len(buffer) == FLUSH_AT and self._wake is not None:
            self._wake.set()

    def request_done(self, ctx: RequestContext, down: Downstream) -> None:
        """The line of one forwarded request (called by ``Forwarder.serve``)."""
        runtime = ctx.runtime
        key = ctx.key
        self.add((
            time.time(), ctx.request_id, "POST", ctx.path,
            runtime.name if runtime is not None else ctx.model,
            key.name if key is not None else None, down.status, ctx.bytes_out,
            time.perf_counter() - ctx.started, ctx.ttft,
            runtime.base_url if runtime is not None else "",
        ))  # fmt: skip

    # background ----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the flusher and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.flush_s)
            wake.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001  (a broken log must not stop the gateway)
                log.exception("gateway: writing the access log failed")

    async def flush(self) -> None:
        if not self.buffer:
            return
        entries, self.buffer = self.buffer, []
        stamps: dict[int, str] = {}
        parts: list[str] = []
        for start in range(0, len(entries), _FORMAT_BATCH):
            batch = entries[start : start + _FORMAT_BATCH]
            parts += [format_entry(AccessEntry._make(e), stamps) for e in batch]
            if start + _FORMAT_BATCH < len(entries):
                await asyncio.sleep(0)
        if self.dropped:
            parts.append(f'{{"dropped":{self.dropped}}}\n')
            self.dropped = 0
        await asyncio.to_thread(self._append, "".join(parts).encode())

    def _append(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(data) > ROTATE_BYTES:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("ab") as handle:
                handle.write(data)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # once, not once per flush
                log.error("gateway: cannot write the access log %s: %s", self.path, exc)
            self._failed = True


def _size(response: web.StreamResponse | None) -> int:
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return len(response.body)
    return response.body_length if response is not None and response.prepared else 0


def access_middleware(access: AccessLog | None, forwarded: frozenset[str]) -> Middleware:
    """A request id (and an access line, when there is a log) for every route aiohttp
    serves but the forwarded ones, which ``Forwarder`` gives both itself."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path in forwarded:
            return await handler(request)
        request_id = request[REQUEST_ID] = accept_request_id(request.headers.get("X-Request-Id"))
        started = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            if access is not None:
                size = _size(response)
                match = request.match_info
                access.add(AccessEntry(
                    time.time(), request_id, request.method, request.path,
                    match.get("name") or match.get("model") or "", request.get(KEY_NAME),
                    status, size, time.perf_counter() - started, None, "",
                ))  # fmt: skip

    return middleware


async def set_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer aiohttp sends names its request id."""
    request_id = request.get(REQUEST_ID)
    if request_id and "X-Request-Id" not in response.headers:
        response.headers["X-Request-Id"] = request_id
