"""A lean closed-loop HTTP load generator (aiohttp + uvloop), run as its own
process so it does not share an event loop with what it measures.

usage: python -m benchmarks.load_client URL CONCURRENCY SECONDS [--stream] [--key KEY]
                                        [--start-at EPOCH] [--latencies FILE]
                                        [--paired URL]
Prints one JSON object: requests, errors, seconds, rps, p50_ms, p90_ms, p99_ms.
``--start-at`` lets several client processes measure the same interval (their
connections are opened before it); ``--latencies`` writes every latency (s) as
JSON so their percentiles can be merged exactly. ``--paired URL`` (concurrency
1): every request to URL is followed by one to the paired URL (without the key),
so both are measured under the same conditions; adds ``paired_p50_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp

BODY = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def warm_up(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]
) -> None:
    """One unmeasured request, so the connection is open before the interval."""
    async with session.post(url, data=payload, headers=headers) as response:
        await response.read()


async def run(
    url: str,
    concurrency: int,
    seconds: float,
    stream: bool,
    key: str | None,
    start_at: float | None = None,
    latencies: list[float] | None = None,
    paired: str | None = None,
) -> dict[str, float]:
    payload = json.dumps({**BODY, "stream": stream}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    latencies = [] if latencies is None else latencies
    paired_latencies: list[float] = []
    plain_headers = {"Content-Type": "application/json"}
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency + bool(paired), force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        if start_at is not None:
            await asyncio.gather(*(warm_up(session, url, payload, headers)
                                   for _ in range(concurrency)))  # fmt: skip
            await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds

        async def one(target: str, sent: dict[str, str], into: list[float]) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                async with session.post(target, data=payload, headers=sent) as response:
                    async for _ in response.content.iter_any():
                        pass
                    if response.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            into.append(time.perf_counter() - start)

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one(url, headers, latencies)
                if paired:
                    await one(paired, plain_headers, paired_latencies)

        # warm-up: open the connections before measuring
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    result = {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
    }
    if paired:
        result["paired_p50_ms"] = (
            statistics.median(paired_latencies) * 1000 if paired_latencies else 0.0
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key")
    parser.add_argument("--start-at", type=float)
    parser.add_argument("--latencies")
    parser.add_argument("--paired")
    args = parser.parse_args()
    if args.paired and args.concurrency != 1:
        parser.error("--paired needs concurrency 1")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    latencies: list[float] = []
    result = asyncio.run(
        run(args.url, args.concurrency, args.seconds, args.stream, args.key,
            args.start_at, latencies, args.paired)
    )  # fmt: skip
    if args.latencies:
        Path(args.latencies).write_text(json.dumps(latencies))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
