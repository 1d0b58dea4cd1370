"""Who may talk to the gateway at all, checked before any route runs: the
``Host`` a request names (DNS rebinding: a web page's own host name resolved to
127.0.0.1 must not reach an open loopback gateway, as in Ollama's CVE-2024-28224),
the browser ``Origin`` it comes from (a page on another origin cannot call the
model or admin routes unless ``gateway.cors_origins`` allows it), and the media
type of a body (JSON only). Requests without an ``Origin`` (the CLI, SDKs, curl)
pass the origin check; browsers always send one on cross-origin requests."""

from __future__ import annotations

from collections.abc import Callable

from sparkstack.errors import GatewayError
from sparkstack.gateway.openai_errors import bad_header, forbidden
from sparkstack.stack.schema import GatewaySpec

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_PLAIN_JSON = frozenset({"application/json", "application/json; charset=utf-8"})
_PROTECTED_PREFIXES = ("/v1/", "/admin/")
_PROTECTED_PATHS = frozenset({"/tokenize", "/detokenize", "/metrics"})
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
    "Vary": "Origin",
}


def host_name(host: str) -> str:
    """The name part of a Host header value: no port, no brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


class AccessGuard:
    def __init__(self, spec: GatewaySpec, keys_enabled: Callable[[], bool]) -> None:
        self.keys_enabled = keys_enabled
        self.any_host = spec.host in _WILDCARDS or "*" in spec.allowed_hosts
        self.hosts = _LOOPBACK_NAMES | {host_name(h) for h in (spec.host, *spec.allowed_hosts)}
        self.origins = frozenset(o.rstrip("/").lower() for o in spec.cors_origins)
        self._passed: set[str] = set()
        """Host values as sent that passed (clients send the same few every time)."""

    def check_host(self, host: str | None) -> None:
        if host in self._passed:
            return
        if host is None or not host.strip():
            raise bad_header("The request has no Host header; HTTP/1.1 needs one.")
        if not self.any_host and host_name(host) not in self.hosts:
            raise forbidden(
                f"The Host {host!r} is not a name this gateway listens on; a web page may be "
                "trying to reach it through DNS rebinding. Use the gateway's address, or add "
                "the name to gateway.allowed_hosts if a proxy forwards it.",
                "host_not_allowed",
            )
        if len(self._passed) < 256:
            self._passed.add(host)

    def check_origin(self, origin: str | None, host: str, path: str) -> str | None:
        """None for requests without a foreign origin; the origin itself when
        gateway.cors_origins allows it (to echo); a 403 for a protected route."""
        if origin is None:
            return None
        origin = origin.strip().rstrip("/").lower()
        if origin in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return None
        if origin in self.origins or ("*" in self.origins and self.keys_enabled()):
            return origin
        if path.startswith(_PROTECTED_PREFIXES) or path in _PROTECTED_PATHS:
            raise forbidden(
                f"Requests from the web page origin {origin!r} may not use {path}; add it to "
                "gateway.cors_origins if you trust that page.",
                "origin_not_allowed",
            )
        return None

    def check(self, host: str | None, origin: str | None, path: str) -> str | None:
        self.check_host(host)
        assert host is not None
        return self.check_origin(origin, host, path)


def check_content_type(value: str | None) -> None:
    """JSON bodies only (a missing Content-Type is taken as JSON, as engines do)."""
    if value is None or value in _PLAIN_JSON:
        return
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise bad_header(
            f"Content-Type {value[:100]!r} is not supported; send the body as JSON with "
            "'Content-Type: application/json'.",
            status=415, code="unsupported_media_type",
        )  # fmt: skip
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8", "utf8"
        ):  # fmt: skip
            raise bad_header(
                f"Content-Type charset {val.strip()[:40]!r} is not supported; JSON is UTF-8.",
                status=415, code="unsupported_media_type",
            )  # fmt: skip


def check_duplicates(name: str) -> GatewayError:
    return bad_header(f"The request has more than one {name} header; send it once.")
