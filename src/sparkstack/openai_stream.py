"""The one rule for which streamed OpenAI chunks carry generated tokens, shared
by the gateway (counting tokens for engines that send no usage) and the bench
(timing the first and last token). It imports nothing from either.

A chunk bears tokens when any of its ``choices`` has non-empty ``delta.content``,
``delta.reasoning_content``, ``delta.reasoning`` (vLLM's newer name) or
``delta.tool_calls`` (chat), or non-empty ``text`` (completions). Role-only,
empty, usage-only chunks and ``[DONE]`` do not.
"""

from __future__ import annotations

from typing import Any


def chunk_text(chunk: dict[str, Any]) -> tuple[str, bool]:
    """The text a parsed chunk carries (all choices) and whether it bears tokens."""
    texts: list[str] = []
    bears = False
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if "text" in choice:
            text = choice.get("text") or ""
            texts.append(text)
            bears = bears or bool(text)
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        texts.append(reasoning + content)
        bears = bears or bool(content or reasoning or delta.get("tool_calls"))
    return "".join(texts), bears
