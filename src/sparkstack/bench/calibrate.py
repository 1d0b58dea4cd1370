"""Client self-calibration at the start of a run: the same client, on the same
event loop, against an in-process null server (a raw asyncio HTTP/1.1 server that
answers every POST at once with a canned stream of ``EVENTS`` SSE events, chunked,
keep-alive). It measures the most requests/s and events/s the client can take,
the cost of turning one event into numbers (``measure``), and the loop's timer
jitter. The null server shares the loop, so the ceiling is a conservative one.

Each point then reports the share of that ceiling it used (``client_share``)."""

from __future__ import annotations

import asyncio
import json
import time

from pydantic import BaseModel

from sparkstack.bench.client import BenchClient, Capture
from sparkstack.bench.measure import measure
from sparkstack.bench.stats import percentile

EVENTS = 32
"""Token events per null answer (plus a role chunk, a usage chunk and [DONE])."""


class Calibration(BaseModel):
    """What the client can do on this machine, measured at the start of the run."""

    requests_per_s: float
    events_per_s: float
    parse_us_per_event: float
    timer_jitter_ms_p50: float
    timer_jitter_ms_p99: float
    seconds: float
    concurrency: int
    events_per_request: int = EVENTS + 3


def _canned() -> bytes:
    def event(data: dict[str, object]) -> bytes:
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    body = event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for i in range(EVENTS):
        body += event({"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
    body += event({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": EVENTS}})
    body += b"data: [DONE]\n\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answer = _canned()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _jitter(samples: int = 60, period: float = 0.001) -> list[float]:
    lags: list[float] = []
    for _ in range(samples):
        due = time.perf_counter() + period
        await asyncio.sleep(period)
        lags.append(max(0.0, (time.perf_counter() - due) * 1000))
    return sorted(lags)


async def calibrate(seconds: float = 0.5, concurrency: int = 16) -> Calibration:
    """Drive the null server with ``concurrency`` closed-loop users for ``seconds``."""
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = BenchClient(f"http://127.0.0.1:{port}/v1", {}, timeout=10.0)
    body = b'{"model":"null","stream":true,"max_tokens":32,"messages":[]}'
    captures: list[Capture] = []
    try:
        for _ in range(concurrency):  # open the connections outside the clock
            await client.send("/chat/completions", body, Capture(t_sched_ns=time.perf_counter_ns()))
        began = time.perf_counter()
        deadline = began + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                capture = Capture(t_sched_ns=time.perf_counter_ns())
                captures.append(await client.send("/chat/completions", body, capture))

        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    parse_began = time.perf_counter()
    for capture in captures:
        measure(capture, "calibration", 0, capture.t_send_ns, "", 8, EVENTS)
    parse_s = time.perf_counter() - parse_began
    jitter = await _jitter()
    done = len([c for c in captures if c.status == 200])
    return Calibration(
        requests_per_s=done / elapsed,
        events_per_s=done * (EVENTS + 3) / elapsed,
        parse_us_per_event=parse_s * 1e6 / max(1, len(captures) * (EVENTS + 3)),
        timer_jitter_ms_p50=percentile(jitter, 50),
        timer_jitter_ms_p99=percentile(jitter, 99),
        seconds=elapsed,
        concurrency=concurrency,
    )
