"""An engine's error answer made fit for an OpenAI client: an OpenAI-shaped JSON
error passes through untouched; anything else (an HTML page, plain text, an
empty body, truncated or foreign JSON) becomes an OpenAI error object that keeps
the engine's status and quotes a bounded excerpt of what it said."""

from __future__ import annotations

import json
import re

from sparkstack.errors import GatewayError

EXCERPT_CHARS = 500
_TAGS = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]*>", re.S | re.I)
_SPACE = re.compile(r"\s+")


def is_openai_error(content_type: str, data: bytes) -> bool:
    """An ``{"error": ...}`` object, or vLLM's older ``{"object": "error", ...}``."""
    if "json" not in content_type.lower():
        return False
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict):
        return False
    error = obj.get("error")
    return isinstance(error, dict | str) or (
        obj.get("object") == "error" and isinstance(obj.get("message"), str)
    )


def excerpt(content_type: str, data: bytes) -> str:
    text = data[: EXCERPT_CHARS * 8].decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        text = _TAGS.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


def engine_error(model: str, status: int, content_type: str, data: bytes) -> GatewayError:
    what = "an empty body" if not data.strip() else f"{content_type or 'no content type'}"
    said = excerpt(content_type, data)
    message = f"The engine of model {model!r} answered {status} with {what}"
    message += f": {said}" if said else "."
    return GatewayError(message, status=status, error_type="upstream_error", code="engine_error")
