"""Request ids: the client's ``x-request-id`` when it is sane (at most 128
characters from a safe set, so it can go into a log line and an engine's
request head as it is), otherwise a new one. New ids are UUID-shaped (some
engines refuse any other ``x-request-id``): a random per-process prefix and a
counter, unique across restarts and a few hundred nanoseconds each (no uuid4,
no system call per request)."""

from __future__ import annotations

import itertools
import re
import secrets

MAX_LENGTH = 128
_SAFE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_RANDOM = secrets.token_hex(10)
_PREFIX = f"{_RANDOM[:8]}-{_RANDOM[8:12]}-{_RANDOM[12:16]}-{_RANDOM[16:]}-"
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """80 random bits per process, then a 48-bit counter."""
    return f"{_PREFIX}{next(_COUNTER):012x}"


def accept_request_id(given: str | None) -> str:
    """``given`` when it is a safe id, otherwise a new one."""
    if given and _SAFE.fullmatch(given):
        return given
    return new_request_id()


def forwardable(request_id: str, uuid_only: bool) -> bool:
    """Whether the id may go to an engine (``uuid_only``: one that refuses others)."""
    return not uuid_only or _UUID.fullmatch(request_id) is not None
