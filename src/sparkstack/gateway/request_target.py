"""What the gateway sends upstream as the request target, and what it refuses.

The upstream request line is never built from the client's bytes: it is the
route's own path (from the engine adapter) plus a query string re-encoded from
the parsed parameters the engine takes (none, for the OpenAI routes). A
percent-encoded CR, LF, NUL, space or other control byte anywhere in the
client's target would otherwise let a client write a second request onto the
engine's connection (request smuggling), so it is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote_to_bytes, urlencode

from sparkstack.gateway.openai_errors import bad_request

# Bytes that never belong in a decoded path or query value: C0 controls (CR, LF,
# NUL, TAB, ...), DEL, and space (a request line is split on spaces).
_FORBIDDEN = re.compile(rb"[\x00-\x20\x7f]")
MAX_TARGET = 8192
"""The longest request target accepted (bytes), as nginx's default large header buffer."""


def forbidden_byte(raw: str) -> bytes | None:
    """The first forbidden byte in ``raw`` once percent-decoded, or None."""
    match = _FORBIDDEN.search(unquote_to_bytes(raw))
    return match.group(0) if match else None


def check_target(raw_path: str) -> None:
    """Refuse a request target whose path or query hides a forbidden byte, climbs
    out of its route with ``..``, or is overlong: 400 in the OpenAI shape."""
    if len(raw_path) > MAX_TARGET:
        raise bad_request(
            f"The request target is {len(raw_path)} bytes long, over the {MAX_TARGET} "
            "allowed; send parameters in the JSON body."
        )
    bad = forbidden_byte(raw_path)
    if bad is not None:
        raise bad_request(
            f"The request target contains the byte {bad!r} (percent-encoded or not); "
            "control characters, CR, LF and spaces are not allowed in a URL."
        )
    segments = unquote_to_bytes(raw_path.split("?", 1)[0]).split(b"/")
    if b".." in segments or b"." in segments:
        raise bad_request("The request path contains '.' or '..' segments; use the route's path.")


def upstream_target(
    route_path: str, query: Iterable[tuple[str, str]], allowed: frozenset[str]
) -> str:
    """``route_path`` plus the allowed parameters of ``query``, re-encoded."""
    kept = [(name, value) for name, value in query if name in allowed]
    if not kept:
        return route_path
    return f"{route_path}?{urlencode(kept, quote_via=quote)}"
