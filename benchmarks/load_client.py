"""A lean closed-loop HTTP load generator (aiohttp + uvloop), run as its own
process so it does not share an event loop with what it measures.

usage: python -m benchmarks.load_client URL CONCURRENCY SECONDS [--stream] [--key KEY]
Prints one JSON object: requests, errors, seconds, rps, p50_ms, p90_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

BODY = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def run(
    url: str, concurrency: int, seconds: float, stream: bool, key: str | None
) -> dict[str, float]:
    payload = json.dumps({**BODY, "stream": stream}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers=headers) as response:
                        async for _ in response.content.iter_any():
                            pass
                        if response.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)

        # warm-up: open the connections before measuring
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.concurrency, args.seconds, args.stream, args.key))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
