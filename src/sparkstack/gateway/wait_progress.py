"""What a request waiting for its model to load is told: how long to wait
before retrying (``Retry-After`` on a refusal: the expected load time learned
from the model's past starts, less how long the running start has taken, at
least 1 s), and, on a stream, progress while it waits.

Progress comes in one of two shapes (``gateway.wait_progress``):

* ``comments`` (default): SSE comments, ``: loading model smol (3s)``, which
  every SSE parser skips;
* ``events``: a ``data:`` chunk in the OpenAI stream shape the official clients
  parse (``chat.completion.chunk`` with one choice whose delta content is empty,
  or a ``text_completion`` with empty text), carrying the progress in an extra
  ``sparkstack_progress`` object: state, queue position, requests waiting,
  seconds elapsed, expected and remaining. A client that only prints
  ``delta.content`` prints nothing for it; one that looks can render it.
"""

from __future__ import annotations

import json
import math
import time

from sparkstack.gateway.context import RequestContext
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

UNKNOWN_LOAD_S = 5.0
"""Retry-After for a model with no start measured yet."""
_SHAPES = {"/v1/chat/completions": "chat.completion.chunk", "/v1/completions": "text_completion"}


def remaining_seconds(runtime: ModelRuntime, now: float | None = None) -> float | None:
    """Seconds until the model should be ready by its past starts (None: never measured)."""
    expected = runtime.expected_load_seconds
    if expected is None:
        return None
    now = time.monotonic() if now is None else now
    elapsed = now - runtime.load_started if runtime.load_started else 0.0
    return max(expected - elapsed, 0.0)


def retry_after(runtime: ModelRuntime) -> int:
    """Whole seconds for ``Retry-After``: the load's expected remainder, at least 1."""
    remaining = remaining_seconds(runtime)
    return max(1, math.ceil(UNKNOWN_LOAD_S if remaining is None else remaining))


def comment(runtime: ModelRuntime, waited: float) -> bytes:
    return f": loading model {runtime.name} ({waited:.0f}s)\n\n".encode()


def can_send_events(path: str) -> bool:
    return path in _SHAPES


def progress_event(
    ctx: RequestContext, runtime: ModelRuntime, position: int, waiting: int, waited: float
) -> bytes:
    """One progress chunk in the stream shape of ``ctx``'s route (see the module doc)."""
    remaining = remaining_seconds(runtime)
    state = runtime.state.value if runtime.state is not ModelState.READY else "starting"
    progress = {
        "model": runtime.name,
        "state": state,
        "queue_position": position,
        "waiting": waiting,
        "elapsed_seconds": round(waited, 1),
        "expected_seconds": runtime.expected_load_seconds,
        "remaining_seconds": round(remaining, 1) if remaining is not None else None,
    }
    kind = _SHAPES[ctx.path]
    choice: dict[str, object] = {"index": 0, "logprobs": None, "finish_reason": None}
    if kind == "text_completion":
        choice["text"] = ""
    else:
        choice["delta"] = {"content": ""}
    chunk = {
        "id": f"{'chatcmpl' if kind != 'text_completion' else 'cmpl'}-wait-{ctx.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": ctx.model or runtime.name,
        "choices": [choice],
        "sparkstack_progress": progress,
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
