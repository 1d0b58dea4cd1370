"""Turns a `Capture` into a `RequestRecord`: splits the raw reads into SSE events
(each event stamped with the arrival of the read holding its first byte), finds
the token-bearing events, and computes the per-request metrics.

Definitions (also written into every summary.json):

* token-bearing event: the rule in ``sparkstack.openai_stream`` (non-empty
  content, reasoning or tool calls; role-only, empty, usage-only chunks, SSE
  comments and ``[DONE]`` are not), shared with the gateway.
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
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from sparkstack.bench.client import Capture
from sparkstack.bench.records import RequestRecord
from sparkstack.openai_stream import chunk_text

_MS = 1e-6


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def _split_events(capture: Capture) -> list[tuple[int, bytes]]:
    """(arrival ns of the event's first byte, event bytes) for each SSE event.

    Boundaries are found in the bytes as received (LF, CRLF or CR line ends, per
    the SSE spec), so every offset maps back to the read that carried it."""
    stamps: list[int] = []
    offsets: list[int] = []
    position = 0
    for stamp, data in capture.reads:
        stamps.append(stamp)
        offsets.append(position)
        position += len(data)
    body = b"".join(data for _, data in capture.reads)
    events: list[tuple[int, bytes]] = []
    start = 0
    for boundary in (*_EVENT_END.finditer(body), None):
        end = boundary.start() if boundary else len(body)
        event = body[start:end]
        if event.strip():
            lead = start + len(event) - len(event.lstrip())
            events.append((stamps[bisect_right(offsets, lead) - 1], event))
        if boundary is None:
            break
        start = boundary.end()
    return events


def _payloads(event: bytes) -> list[bytes]:
    return [line[5:].strip() for line in _LINE_END.split(event) if line.startswith(b"data:")]


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
        client_lag_ms=max(
            0.0, ((capture.t_ready_ns or capture.t_send_ns) - capture.t_sched_ns) * _MS
        ),
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
    last_chunk: int | None = None
    first_chunk_bears: bool | None = None
    last_chunk_bears: bool | None = None
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
            text, bears = chunk_text(chunk)
            if chunk.get("choices"):
                if scan.first_chunk is None:
                    scan.first_chunk, scan.first_chunk_bears = stamp, bears
                scan.last_chunk, scan.last_chunk_bears = stamp, bears
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
        # choice chunks that bear no token around the tokens (a role chunk before,
        # a finish_reason chunk after): vLLM bench times and gaps include them
        if scan.first_chunk is not None and scan.first_chunk_bears is False:
            record.lead_gap_ms = (times[0] - scan.first_chunk) * _MS
        if scan.last_chunk is not None and scan.last_chunk_bears is False:
            record.tail_gap_ms = (scan.last_chunk - times[-1]) * _MS
        lag = (send - capture.t_sched_ns) * _MS
        record.ttft_sched_ms = record.ttft_ms + lag
        record.e2e_sched_ms = record.e2e_ms + lag
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
