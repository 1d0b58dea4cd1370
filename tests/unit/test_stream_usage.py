"""The usage chunk added for engines that ignore include_usage."""

from __future__ import annotations

import json

from sparkstack.gateway.stream_usage import UsageCounter, wants_stream_usage


def chunk(content: str | None) -> bytes:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "smol",
            "choices": [{"index": 0, "delta": delta}]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def test_counts_text_chunks_and_inserts_usage_before_done_across_splits() -> None:
    stream = chunk(None) + chunk("Hel") + chunk("lo") + chunk("") + b"data: [DONE]\n\n"
    counter = UsageCounter(prompt_tokens=5)
    out = b"".join(counter.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    usage = json.loads(events[-2].removeprefix(b"data: "))
    assert usage["choices"] == [] and usage["id"] == "c1" and usage["model"] == "smol"
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    # every original event is passed on unchanged
    assert out.replace(events[-2] + b"\n\n", b"") == stream


def test_wants_stream_usage() -> None:
    assert wants_stream_usage({"stream": True, "stream_options": {"include_usage": True}})
    assert not wants_stream_usage({"stream": True})
    assert not wants_stream_usage({"stream": False, "stream_options": {"include_usage": True}})
