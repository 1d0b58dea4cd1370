"""The web dashboard's files, shipped inside the package (no CDN, no build step)
and read once into memory."""

from __future__ import annotations

from functools import cache
from importlib import resources

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
ASSETS = ("index.html", "app.js", "style.css")


@cache
def asset(name: str) -> tuple[bytes, str] | None:
    """(body, content type) of a dashboard file, or None for an unknown name."""
    if name not in ASSETS:
        return None
    body = resources.files("sparkstack.telemetry").joinpath("dashboard", name).read_bytes()
    return body, CONTENT_TYPES[name[name.rfind(".") :]]
