"""How a raw stream becomes a request's numbers: which chunks bear tokens, where
the timestamps come from, and where output tokens are counted."""

from __future__ import annotations

import json

from sparkstack.bench.client import Capture
from sparkstack.bench.measure import measure

MS = 1_000_000


def event(delta: dict[str, object] | None = None, usage: dict[str, int] | None = None) -> bytes:
    chunk: dict[str, object] = {"choices": [{"index": 0, "delta": delta}] if delta else []}
    if usage:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def capture(reads: list[tuple[int, bytes]], status: int = 200) -> Capture:
    return Capture(
        t_sched_ns=0,
        t_send_ns=0,
        t_headers_ns=MS,
        t_end_ns=reads[-1][0] + MS,
        status=status,
        reads=[(t * MS, data) for t, data in reads],
    )


def test_role_chunk_is_not_a_token_and_usage_counts_output() -> None:
    usage = {"prompt_tokens": 40, "completion_tokens": 9}
    record = measure(
        capture(
            [
                (5, event({"role": "assistant", "content": ""})),
                (20, event({"content": "Hel"})),
                (
                    30,
                    event({"content": "lo"}) + event({"content": ", world"}),
                ),  # two events, one read
                (100, event({"content": "!"})),
                (101, event(usage=usage) + b"data: [DONE]\n\n"),
            ]
        ),
        "p",
        0,
        0,
        "hi",
        40,
        9,
    )
    assert record.ok
    assert record.ttfc_ms == 5 and record.ttft_ms == 20 and record.e2e_ms == 100
    assert record.token_events == 4 and record.completion_tokens == 9
    assert record.osl_source == "usage" and record.prompt_tokens == 40
    assert record.itl_ms == (100 - 20) / (9 - 1)  # tokens from usage, not chunks
    assert record.tpot_ms == 100 / 9
    assert record.chunk_gaps_ms == [10, 0, 70]
    assert record.prefill_tok_s == 40 * 1000 / 20
    assert record.output == "Hello, world!"


def test_reasoning_chunks_are_output_and_events_count_without_usage() -> None:
    record = measure(
        capture(
            [
                (10, event({"reasoning_content": "think"})),
                (20, event({"reasoning": "more"})),
                (30, event({"content": "answer"})),
                (31, b": keep-alive comment\n\n" + b"data: [DONE]\n\n"),
            ]
        ),
        "p",
        0,
        0,
        "hi",
        5,
        3,
    )
    assert record.ttft_ms == 10 and record.e2e_ms == 30
    assert record.completion_tokens == 3 and record.osl_source == "events"


def test_event_split_across_reads_takes_the_time_of_its_first_byte() -> None:
    whole = event({"content": "abc"})
    record = measure(
        capture([(10, whole[:7]), (50, whole[7:]), (60, b"data: [DONE]\n\n")]), "p", 0, 0, "", 0, 1
    )
    assert record.ttft_ms == 10


def test_errors_are_kept_with_their_reason() -> None:
    body = json.dumps({"error": {"message": "model 'x' not found", "type": "invalid"}})
    http = measure(capture([(3, body.encode())], status=404), "p", 0, 0, "", 1, 1)
    assert not http.ok and http.error_kind == "http_404" and "not found" in http.error
    in_band = measure(
        capture(
            [
                (10, event({"content": "a"})),
                (20, b'data: {"error": {"message": "engine died"}}\n\n'),
            ]
        ),
        "p",
        0,
        0,
        "",
        1,
        5,
    )
    assert (
        not in_band.ok and in_band.error_kind == "stream_error" and in_band.error == "engine died"
    )
    empty = measure(capture([(10, b"data: [DONE]\n\n")]), "p", 0, 0, "", 1, 5)
    assert not empty.ok and empty.error_kind == "empty"
    gone = Capture(
        t_sched_ns=0,
        t_send_ns=0,
        t_end_ns=2 * MS,
        error_kind="connect",
        error="127.0.0.1:9: refused",
    )
    refused = measure(gone, "p", 0, 0, "", 1, 5)
    assert not refused.ok and refused.error_kind == "connect" and refused.close_ms == 2


def test_crlf_framed_events_keep_their_own_arrival_times() -> None:
    """SSE allows CRLF line ends; each event keeps the time of the read that held it
    (it used to get the last read's time: TTFT = E2E, chunk gaps 0)."""

    def crlf(data: bytes) -> bytes:
        return data.replace(b"\n", b"\r\n")

    usage = {"prompt_tokens": 10, "completion_tokens": 3}
    reads = [
        (5, crlf(event({"role": "assistant", "content": ""}))),
        (20, crlf(event({"content": "a"}))),
        (45, crlf(event({"content": "b"}))[:9]),  # an event split mid-line
        (46, crlf(event({"content": "b"}))[9:]),
        (90, crlf(event({"content": "c"}) + event(usage=usage)) + b"data: [DONE]\r\n\r\n"),
    ]
    record = measure(capture(reads), "p", 0, 0, "hi", 10, 3)
    assert record.ok and record.output == "abc"
    assert record.ttfc_ms == 5 and record.ttft_ms == 20 and record.e2e_ms == 90
    assert record.chunk_gaps_ms == [25, 45]
    assert record.itl_ms == (90 - 20) / 2
    assert record.lead_gap_ms == 15 and record.tail_gap_ms is None


def test_from_schedule_latency_adds_the_wait_before_sending() -> None:
    record = measure(
        Capture(
            t_sched_ns=0,
            t_ready_ns=2 * MS,
            t_send_ns=40 * MS,
            t_end_ns=80 * MS,
            status=200,
            reads=[(50 * MS, event({"content": "a"})), (70 * MS, event({"content": "b"}))],
        ),
        "p",
        0,
        0,
        "hi",
        1,
        2,
    )
    assert record.ttft_ms == 10 and record.e2e_ms == 30
    assert record.ttft_sched_ms == 50 and record.e2e_sched_ms == 70
    assert record.send_lag_ms == 40 and record.client_lag_ms == 2


def test_gateway_and_bench_count_the_same_chunks() -> None:
    """One token rule (sparkstack.openai_stream) for the gateway's usage counter
    and the bench's token events: tool calls and reasoning count in both."""
    from sparkstack.gateway.stream_usage import UsageCounter

    deltas: list[dict[str, object]] = [
        {"role": "assistant", "content": ""},
        {"content": "x"},
        {"reasoning": "r"},
        {"reasoning_content": "rc"},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]},
        {"content": None},
    ]
    stream = b"".join(event(d) for d in deltas) + b"data: [DONE]\n\n"
    counter = UsageCounter(prompt_tokens=1)
    counter.feed(stream)
    record = measure(
        capture([(i + 1, e + b"\n\n") for i, e in enumerate(stream.split(b"\n\n")) if e]),
        "p",
        0,
        0,
        "",
        1,
        4,
    )
    assert counter.completion_tokens == record.token_events == 4
