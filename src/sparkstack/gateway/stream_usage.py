"""The final ``usage`` chunk of a stream, for engines that ignore
``stream_options.include_usage`` (llama-cpp-python's server).

Events are relayed unchanged; this filter only watches them go by, counts the
chunks that carry generated tokens (the rule in ``openai_stream``; llama-cpp-python
sends one per token), and
writes one usage chunk before ``[DONE]``, as OpenAI and vLLM do. Prompt tokens
come from the engine's own tokenizer (``EngineAdapter.count_prompt_tokens``).
"""

from __future__ import annotations

import json
from typing import Any

from sparkstack.openai_stream import chunk_text

DONE = b"data: [DONE]"


def wants_stream_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return (
        bool(payload.get("stream"))
        and isinstance(options, dict)
        and bool(options.get("include_usage"))
    )


def _carries_text(event: bytes) -> tuple[bool, dict[str, Any] | None]:
    if not event.startswith(b"data: {"):
        return False, None
    try:
        chunk = json.loads(event[6:])
    except json.JSONDecodeError:
        return False, None
    if not isinstance(chunk, dict):
        return False, None
    return chunk_text(chunk)[1], chunk


class UsageCounter:
    """Feed it the stream's bytes; it returns them with a usage chunk inserted."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self._pending = b""
        self._last: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out: list[bytes] = []
        while True:
            end = self._pending.find(b"\n\n")
            if end < 0:
                break
            event, self._pending = self._pending[: end + 2], self._pending[end + 2 :]
            stripped = event.strip()
            if stripped == DONE:
                out.append(self.usage_event())
            else:
                text, chunk = _carries_text(stripped)
                self.completion_tokens += text
                if chunk is not None:
                    self._last = chunk
            out.append(event)
        return b"".join(out)

    def usage_event(self) -> bytes:
        last = self._last or {}
        chunk = {
            "id": last.get("id", ""),
            "object": last.get("object", "chat.completion.chunk"),
            "created": last.get("created", 0),
            "model": last.get("model", ""),
            "choices": [],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"
