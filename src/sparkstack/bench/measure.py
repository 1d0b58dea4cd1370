"""Turns a `Capture` into a `RequestRecord`: splits the raw reads into SSE events
(each event stamped with the arrival of the read holding its first byte), finds
the token-bearing events, and computes the per-request metrics.

Definitions (also written into every summary.json):

* token-bearing event: a chunk whose ``choices[0].delta`` has non-empty
  ``content``, ``reasoning_content``, ``reasoning`` or ``tool_calls`` (chat), or
  non-empty ``text`` (completions). Role-only, empty, usage-only chunks, SSE
  comments and ``[DONE]`` are not.
* TTFC: first data event of any kind (what vLLM bench calls TTFT).
* TTFT: first token-bearing event.  E2E: last token-bearing event.
* ITL: (E2E - TTFT) / (output tokens - 1)  (= aiperf and genai-perf ITL = vLLM TPOT).
* TPOT: E2E / output tokens (whole request, prefill included; = GuideLLM TPOT).
* chunk gap: time between consecutive token-bearing events (= vLLM ITL, aiperf ICL).
* output tokens: ``usage.completion_tokens`` (reasoning included); without usage the
  number of token-bearing events, flagged ``osl_source=events``.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from sparkstack.bench.client import Capture
from sparkstack.bench.records import RequestRecord

_MS = 1e-6


def _split_events(capture: Capture) -> list[tuple[int, bytes]]:
    """(arrival ns of the event's first byte, event bytes) for each SSE event."""
    stamps: list[int] = []
    offsets: list[int] = []
    position = 0
    for stamp, data in capture.reads:
        stamps.append(stamp)
        offsets.append(position)
        position += len(data)
    body = b"".join(data for _, data in capture.reads).replace(b"\r\n", b"\n")
    if len(body) != position:  # CRLF line ends: offsets no longer match; stamp per read
        return [(stamps[-1], event) for event in body.split(b"\n\n") if event.strip()]
    events: list[tuple[int, bytes]] = []
    start = 0
    while start < len(body):
        end = body.find(b"\n\n", start)
        if end < 0:
            end = len(body)
        event = body[start:end]
        if event.strip():
            lead = start + len(event) - len(event.lstrip())
            events.append((stamps[bisect_right(offsets, lead) - 1], event))
        start = end + 2
    return events


def _payloads(event: bytes) -> list[bytes]:
    return [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]


def _delta_text(chunk: dict[str, Any]) -> tuple[str, bool]:
    """The text a chunk carries and whether it bears tokens."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", False
    choice = choices[0]
    if "text" in choice:
        text = choice.get("text") or ""
        return text, bool(text)
    delta = choice.get("delta") or {}
    content = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return content + reasoning, bool(content or reasoning or delta.get("tool_calls"))


def _error_text(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500]
        return str(error)[:500]
    return str(payload)[:500]


def measure(
    capture: Capture,
    point: str,
    index: int,
    started_ns: int,
    prompt: str,
    input_tokens: int,
    output_tokens: int,
) -> RequestRecord:
    record = RequestRecord(
        point=point,
        index=index,
        ok=False,
        start_s=(capture.t_send_ns - started_ns) / 1e9,
        send_lag_ms=max(0.0, (capture.t_send_ns - capture.t_sched_ns) * _MS),
        http_status=capture.status,
        prompt=prompt,
        input_tokens_requested=input_tokens,
        output_tokens_requested=output_tokens,
        close_ms=(capture.t_end_ns - capture.t_send_ns) * _MS if capture.t_end_ns else None,
    )
    if capture.error_kind and not capture.reads:
        record.error_kind, record.error = capture.error_kind, capture.error
        return record
    if capture.status != 200:
        body = b"".join(data for _, data in capture.reads)
        try:
            detail = _error_text(json.loads(body))
        except ValueError:
            detail = body.decode(errors="replace")[:500]
        record.error_kind, record.error = f"http_{capture.status}", detail
        return record
    _fill_from_stream(record, capture)
    return record


@dataclass
class _Scan:
    token_times: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    first_chunk: int | None = None
    done_at: int | None = None
    error_kind: str = ""
    error: str = ""


def _scan(capture: Capture) -> _Scan:
    scan = _Scan()
    for stamp, event in _split_events(capture):
        for payload in _payloads(event):
            if payload == b"[DONE]":
                scan.done_at = stamp
                continue
            try:
                chunk = json.loads(payload)
            except ValueError:
                scan.error_kind = "bad_event"
                scan.error = payload[:200].decode(errors="replace")
                continue
            if not isinstance(chunk, dict) or "error" in chunk:
                scan.error_kind, scan.error = "stream_error", _error_text(chunk)
                continue
            if scan.first_chunk is None and chunk.get("choices"):
                scan.first_chunk = stamp
            text, bears = _delta_text(chunk)
            if bears:
                scan.token_times.append(stamp)
                scan.texts.append(text)
            if chunk.get("usage"):
                scan.usage = chunk["usage"]
    return scan


def _fill_from_stream(record: RequestRecord, capture: Capture) -> None:
    send = capture.t_send_ns
    scan = _scan(capture)
    times = scan.token_times
    record.output = "".join(scan.texts)
    record.token_events = len(times)
    record.close_ms = ((scan.done_at or capture.t_end_ns) - send) * _MS
    record.error_kind, record.error = scan.error_kind, scan.error
    if capture.error_kind and not record.error_kind:
        record.error_kind, record.error = capture.error_kind, capture.error
    if not record.error_kind and not times:
        record.error_kind, record.error = "empty", "the stream carried no tokens"
    if scan.first_chunk is not None:
        record.ttfc_ms = (scan.first_chunk - send) * _MS
    if times:
        record.ttft_ms = (times[0] - send) * _MS
        record.e2e_ms = (times[-1] - send) * _MS
        record.chunk_gaps_ms = [(b - a) * _MS for a, b in zip(times, times[1:], strict=False)]
    _count_tokens(record, scan.usage)
    record.ok = not record.error_kind
    _rates(record)


def _count_tokens(record: RequestRecord, usage: dict[str, Any] | None) -> None:
    if usage and usage.get("completion_tokens") is not None:
        record.completion_tokens = int(usage["completion_tokens"])
        record.osl_source = "usage"
        details = usage.get("completion_tokens_details") or {}
        if details.get("reasoning_tokens") is not None:
            record.reasoning_tokens = int(details["reasoning_tokens"])
    else:
        record.completion_tokens = record.token_events
        record.osl_source = "events"
    if usage and usage.get("prompt_tokens") is not None:
        record.prompt_tokens = int(usage["prompt_tokens"])


def _rates(record: RequestRecord) -> None:
    tokens = record.completion_tokens or 0
    if record.ttft_ms is None or record.e2e_ms is None or tokens <= 0:
        return
    record.tpot_ms = record.e2e_ms / tokens
    if record.e2e_ms > 0:
        record.output_tok_s = tokens * 1000 / record.e2e_ms
    if tokens > 1:
        record.itl_ms = (record.e2e_ms - record.ttft_ms) / (tokens - 1)
    if record.prompt_tokens and record.ttft_ms > 0:
        record.prefill_tok_s = record.prompt_tokens * 1000 / record.ttft_ms
