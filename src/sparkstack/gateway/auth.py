"""Bearer-key authorization of a request; with no key file entries (and loopback
only) the gateway is open."""

from __future__ import annotations

from aiohttp import web

from sparkstack.errors import GatewayError
from sparkstack.gateway.access_log import KEY_NAME
from sparkstack.gateway.guard import check_duplicates
from sparkstack.gateway.keys import KeyIndex, KeyRecord


def _auth_error(message: str, code: str) -> GatewayError:
    return GatewayError(message, status=401, error_type="invalid_request_error", code=code)


class Authorizer:
    def __init__(self, keys: KeyIndex | None) -> None:
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return self.keys is not None and self.keys.enabled

    def check(self, request: web.Request, admin: bool = False) -> KeyRecord | None:
        """The key of an aiohttp request (the admin and model-list routes)."""
        values = request.headers.getall("Authorization", [])
        if len(values) > 1:
            raise check_duplicates("Authorization")
        record = self.check_header(values[0] if values else None, admin)
        if record is not None:
            request[KEY_NAME] = record.name  # for the access log; never the key
        return record

    def check_header(self, header: str | None, admin: bool = False) -> KeyRecord | None:
        """Once keys are required, a missing, empty or damaged key file refuses everything."""
        if self.keys is None:
            return None
        self.keys.refresh()
        if not self.keys.enabled:
            return None
        if self.keys.problem:
            raise _auth_error(
                f"The gateway accepts no key now: {self.keys.problem}. Restore the key file "
                "or create a key with `sparkstack keys create NAME`.",
                "key_file_unavailable",
            )
        header = header or ""
        if not header.startswith("Bearer ") or len(header) <= 7:
            raise _auth_error(
                "No API key: send it as 'Authorization: Bearer sk-ss-...' (create one with "
                "`sparkstack keys create NAME`).",
                "missing_api_key",
            )
        record = self.keys.lookup(header[7:].strip(), refreshed=True)
        if record is None:
            raise _auth_error("Incorrect API key provided.", "invalid_api_key")
        if record.revoked:
            raise _auth_error(f"The API key {record.id!r} was revoked.", "revoked_api_key")
        if admin and not record.admin:
            raise GatewayError(
                "This endpoint needs an admin key (`sparkstack keys create NAME --admin`).",
                status=403, error_type="permission_error", code="admin_scope_required",
            )  # fmt: skip
        return record
