"""The JSON body of a forwarded request, read strictly: UTF-8 only, no duplicate
keys, no NaN/Infinity, bounded nesting, an object with a ``model`` string. Each
refusal is a 400 that says what was wrong; engines never see such a body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sparkstack.gateway.openai_errors import bad_request

MAX_DEPTH = 128


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Refused(f"the key {dup[:80]!r} appears twice in one object")
    return obj


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
"""The decoder's C scanner: a body that is one value from its first byte to its
last (the usual case) is read without ``decode``'s Python wrapper; anything
else goes through ``decode`` for its exact error."""


def _depth(body: bytes) -> int:
    """The deepest bracket nesting, counted only when the body could be deep:
    a cheap upper bound (brackets inside strings count too) decides first."""
    opens = body.count(b"[") + body.count(b"{")
    if opens <= MAX_DEPTH:
        return opens
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_payload(body: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object of a request body and its ``model`` field, or a 400."""
    if not body:
        raise bad_request("The request has no body; send a JSON object with a 'model' field.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"The request body is not UTF-8 (byte {exc.start}); JSON must be UTF-8."
        ) from exc
    if _depth(body) > MAX_DEPTH:
        raise bad_request(f"The request body nests deeper than {MAX_DEPTH} levels.")
    try:
        try:
            payload, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            payload = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from exc
    except _Refused as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise bad_request("The request body nests too deeply.") from exc
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(
            "The request has no 'model' field; set it to one of the names in GET /v1/models.",
            param="model",
        )
    return payload, model
