"""The same response interface as upstream.py over aiohttp, for what the lean
client does not speak (https upstreams: external models behind TLS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from sparkstack.gateway.upstream import UpstreamBrokenError, UpstreamConnectError


class AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    @property
    def content_type(self) -> str:
        return self._response.headers.get("Content-Type", "application/json")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamBrokenError(str(exc)) from exc

    def close(self) -> None:
        self._response.release()


async def aiohttp_post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    limits: aiohttp.ClientTimeout,
) -> AiohttpResponse:
    try:
        response = await session.post(url, data=body, headers=headers, timeout=limits)
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamConnectError(str(exc)) from exc
    return AiohttpResponse(response)
