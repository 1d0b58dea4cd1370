"""The hot path: send one request and keep what came back as raw reads, each
stamped with ``time.perf_counter_ns()`` as it arrives. Nothing is parsed here
(``measure.py`` does that after the point ends), so a fast server is not slowed
down by the client and the stamps are not delayed by JSON work.

http:// targets use the gateway's lean keep-alive HTTP/1.1 client; https://
targets use aiohttp.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from sparkstack.gateway.upstream import UpstreamBrokenError, UpstreamConnectError, UpstreamPool


@dataclass(slots=True)
class Capture:
    """What one request produced, untouched."""

    t_sched_ns: int
    t_ready_ns: int = 0
    """When the client got round to the request (open loop: before waiting for a
    free slot under a concurrency cap); late only when the client itself is."""
    t_send_ns: int = 0
    t_headers_ns: int = 0
    t_end_ns: int = 0
    status: int = 0
    reads: list[tuple[int, bytes]] = field(default_factory=list)
    error_kind: str = ""
    error: str = ""


class BenchClient:
    """One connection pool for a whole run; each in-flight request holds one
    connection, reused after it ends (as an OpenAI SDK client would)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._prefix = parts.path
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout
        self._pool = UpstreamPool(connect_timeout=min(timeout, 30.0), read_timeout=timeout)
        self._session: aiohttp.ClientSession | None = None
        if parts.scheme == "https":
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout),
                read_bufsize=2**20,
            )

    @property
    def pool(self) -> UpstreamPool:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()
        if self._session is not None:
            await self._session.close()

    async def send(self, path: str, body: bytes, capture: Capture) -> Capture:
        """POST ``body`` to ``base_url + path``; errors are recorded, never raised."""
        reads = capture.reads
        clock = time.perf_counter_ns
        try:
            if self._session is not None:
                await self._send_aiohttp(path, body, capture)
            else:
                capture.t_send_ns = clock()
                response = await self._pool.post(
                    self._origin, self._prefix + path, body, self._headers
                )
                capture.t_headers_ns = clock()
                capture.status = response.status
                try:
                    async for data in response.iter_chunks():
                        reads.append((clock(), data))
                finally:
                    response.close()
        except TimeoutError:
            phase = "first byte" if capture.t_headers_ns == 0 else "between chunks"
            capture.error_kind = "timeout"
            capture.error = f"no answer for {self._timeout:g} s ({phase})"
        except UpstreamConnectError as exc:
            capture.error_kind = "connect"
            capture.error = str(exc)
        except (UpstreamBrokenError, aiohttp.ClientError, ConnectionError) as exc:
            capture.error_kind = "broken"
            capture.error = str(exc) or type(exc).__name__
        capture.t_end_ns = clock()
        return capture

    async def _send_aiohttp(self, path: str, body: bytes, capture: Capture) -> None:
        assert self._session is not None
        clock = time.perf_counter_ns
        capture.t_send_ns = clock()
        async with self._session.post(
            self.base_url + path, data=body, headers=self._headers
        ) as response:
            capture.t_headers_ns = clock()
            capture.status = response.status
            async for data in response.content.iter_any():
                capture.reads.append((clock(), data))
