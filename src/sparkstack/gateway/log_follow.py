"""``GET /admin/logs/{model}?tail=N&follow=1`` (admin key): the last N lines of
an engine's log (``gateway`` names the gateway's own access log when no model
is called that), then, with ``follow``, every byte appended to it as it
arrives, as a chunked ``text/plain`` stream, until the client disconnects or
the gateway stops. The file is read in a worker thread, polled every
``POLL_S``; a truncated or replaced (rotated) file is read again from its start."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.auth import Authorizer
from sparkstack.gateway.openai_errors import bad_request
from sparkstack.gateway.routing import Router
from sparkstack.settings import Settings

POLL_S = 0.25
DEFAULT_TAIL = 100
MAX_TAIL = 100_000
MAX_TAIL_BYTES = 8 * 2**20
READ_BYTES = 1 << 20
_BLOCK = 65536
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass
class Position:
    """Where following a file has got to: its inode and the offset read up to."""

    inode: int = 0
    offset: int = 0


def tail_lines(path: Path, lines: int) -> tuple[bytes, Position]:
    """The last ``lines`` lines (at most ``MAX_TAIL_BYTES``) and the end position."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            end = stat.st_size
            start, data = end, b""
            while start > 0 and data.count(b"\n") <= lines and end - start < MAX_TAIL_BYTES:
                step = min(_BLOCK, start)
                start -= step
                handle.seek(start)
                data = handle.read(step) + data
    except FileNotFoundError:
        return b"", Position()
    if lines == 0:
        return b"", Position(stat.st_ino, end)
    kept = data.split(b"\n")
    trailing = kept[-1] == b""
    if trailing:
        kept.pop()
    text = b"\n".join(kept[-lines:]) + (b"\n" if trailing else b"")
    return text, Position(stat.st_ino, end)


def read_new(path: Path, at: Position) -> tuple[bytes, Position]:
    """What was appended since ``at`` (a replaced or truncated file: from its start)."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            offset = at.offset
            if stat.st_ino != at.inode or stat.st_size < offset:
                offset = 0
            if stat.st_size == offset:
                return b"", Position(stat.st_ino, offset)
            handle.seek(offset)
            data = handle.read(READ_BYTES)
    except FileNotFoundError:
        return b"", Position()
    return data, Position(stat.st_ino, offset + len(data))


def _tail_param(value: str | None) -> int:
    if value is None:
        return DEFAULT_TAIL
    if not value.isdigit() or int(value) > MAX_TAIL:
        raise bad_request(f"tail={value!r}: give a whole number of lines, 0 to {MAX_TAIL}.", "tail")
    return int(value)


class LogFollower:
    """The handler of ``/admin/logs/{model}`` and the followers it runs."""

    def __init__(self, router: Router, auth: Authorizer, settings: Settings) -> None:
        self.router = router
        self.auth = auth
        self.settings = settings
        self.closing = asyncio.Event()

    def log_path(self, name: str) -> Path:
        if name == "gateway" and name not in self.router.names:
            return self.settings.gateway_log_file
        runtime = self.router.resolve(name)  # an unknown model: a 404
        if not runtime.adapter.managed:
            raise GatewayError(
                f"The model {runtime.name!r} is served by an engine sparkstack does not run; "
                "its log is where that engine runs.",
                status=404, error_type="invalid_request_error", code="no_engine_log",
            )  # fmt: skip
        if runtime.process is not None:
            return runtime.process.log_path
        return self.settings.log_dir / f"{runtime.name}.log"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.auth.check(request, admin=True)
        path = self.log_path(request.match_info["model"])
        lines = _tail_param(request.query.get("tail"))
        follow = request.query.get("follow", "").lower() in _TRUE
        response = web.StreamResponse(
            headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache",
                     "X-Accel-Buffering": "no"}
        )  # fmt: skip
        await response.prepare(request)
        data, position = await asyncio.to_thread(tail_lines, path, lines)
        try:
            if data:
                await response.write(data)
            while follow and not self.closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), POLL_S)
                data, position = await asyncio.to_thread(read_new, path, position)
                if data:
                    await response.write(data)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        return response

    async def close(self, app: web.Application) -> None:
        """``on_shutdown``: end every follow stream, so the gateway stops at once."""
        self.closing.set()
