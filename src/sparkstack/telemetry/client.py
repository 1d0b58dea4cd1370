"""A client of one gateway's admin API for watchers (``sparkstack top``): the
status document, and the load/unload/sleep/wake actions. Every failure is one of
three: the gateway does not answer (try again later), it refused the key, or the
URL is not a sparkstack gateway."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from sparkstack.errors import TelemetryError
from sparkstack.telemetry.document import SCHEMA, StatusDocument

_TIMEOUT = aiohttp.ClientTimeout(total=3)


class Unreachable(TelemetryError):
    """Nothing answers at the URL (or not in time): worth retrying."""


class KeyRefused(TelemetryError):
    """The gateway answered 401/403 to the admin key."""


class NotAGateway(TelemetryError):
    """Something answers, but not a sparkstack gateway's status document."""


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        return str(message) if message else None
    return None


class StatusClient:
    def __init__(self, url: str, key: str | None, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def _call(self, method: str, path: str) -> tuple[int, Any]:
        try:
            async with self.session.request(
                method, self.url + path, headers=self.headers, timeout=_TIMEOUT
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(
                f"{self.url} does not answer ({type(exc).__name__}: {exc or 'timed out'})"
            ) from exc
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    async def status(self) -> StatusDocument:
        code, body = await self._call("GET", "/admin/status")
        message = _error_message(body)
        if code in (401, 403) and message:
            raise KeyRefused(
                f"{self.url} refused the key (HTTP {code}: {message}); pass an admin key "
                "with --key or SPARKSTACK_ADMIN_KEY (`sparkstack keys create NAME --admin`)"
            )
        if code != 200 or not isinstance(body, dict) or body.get("schema_version") != SCHEMA:
            raise NotAGateway(
                f"{self.url} is not a sparkstack gateway: GET /admin/status answered HTTP "
                f"{code} without a {SCHEMA} document; give the gateway's base URL, "
                "e.g. http://HOST:8080"
            )
        return StatusDocument.model_validate(body)

    async def action(self, model: str, action: str) -> str:
        """load, unload, sleep or wake; the outcome, or the gateway's error message."""
        code, body = await self._call("POST", f"/admin/models/{model}/{action}")
        if code == 200 and isinstance(body, dict):
            return f"{action} {model}: {body.get('outcome')} (now {body.get('state')})"
        return f"{action} {model} failed: {_error_message(body) or f'HTTP {code}'}"
