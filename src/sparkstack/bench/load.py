"""Drives one load point: warm-up requests (not recorded), then a closed loop of
N users or an open loop on an absolute schedule (constant or Poisson arrivals,
optionally capped in flight), stopping after a request count or a duration.
Request bodies are encoded before the clock starts; the loop only writes them
and keeps the raw captures."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sparkstack.bench.client import BenchClient, Capture
from sparkstack.bench.jobs import Job, JobStream
from sparkstack.bench.options import Point, Target
from sparkstack.bench.progress import Progress


def make_body(target: Target, prompt: str, output_tokens: int, fields: Collection[str]) -> bytes:
    """The streamed request; ``fields``: the length controls the server accepts."""
    body: dict[str, object] = {
        "model": target.model,
        "max_tokens": output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if "min_tokens" in fields:
        body["min_tokens"] = output_tokens
    if "ignore_eos" in fields:
        body["ignore_eos"] = True
    body.update(target.extra_body)
    return json.dumps(body).encode()


@dataclass
class PointCaptures:
    captures: list[tuple[Job, Capture]]
    started_ns: int


async def warm_up(client: BenchClient, target: Target, jobs: list[Job]) -> None:
    for job in jobs:
        await client.send(target.path, job.body, Capture(t_sched_ns=time.perf_counter_ns()))


async def run_point(
    client: BenchClient, target: Target, point: Point, jobs: JobStream, progress: Progress
) -> PointCaptures:
    results: list[tuple[Job, Capture]] = []
    started = time.perf_counter_ns()
    deadline = started + int(point.duration * 1e9) if point.duration else None
    limit = point.requests

    async def send(job: Job, scheduled: int, ready: int) -> None:
        capture = Capture(t_sched_ns=scheduled, t_ready_ns=ready)
        capture = await client.send(target.path, job.body, capture)
        results.append((job, capture))
        progress.done += 1
        if capture.error_kind or capture.status != 200:
            progress.failed += 1

    if point.rate is None:
        counter = itertools.count()

        async def user() -> None:
            while True:
                i = next(counter)
                now = time.perf_counter_ns()
                if (limit is not None and i >= limit) or (deadline is not None and now >= deadline):
                    return
                job = await jobs.get(i)
                await send(job, now, now)

        await asyncio.gather(*(user() for _ in range(point.concurrency or 1)))
    else:
        await _open_loop(point, jobs, started, deadline, send, target.seed)
    return PointCaptures(results, started)


Sender = Callable[[Job, int, int], Awaitable[None]]


async def _open_loop(
    point: Point, jobs: JobStream, started: int, deadline: int | None, send: Sender, seed: int
) -> None:
    """Requests leave at absolute times (no drift); each waits for a free slot when
    ``concurrency`` caps what is in flight, and that wait shows as send lag (but
    not as client lag: the client was on time, the slot was not free)."""
    assert point.rate is not None
    rng = random.Random(seed)
    gate = asyncio.Semaphore(point.concurrency) if point.concurrency else None
    tasks: list[asyncio.Task[None]] = []

    async def gated(i: int, scheduled: int) -> None:
        job = await jobs.get(i)
        ready = time.perf_counter_ns()
        if gate is None:
            await send(job, scheduled, ready)
            return
        async with gate:
            await send(job, scheduled, ready)

    offset = 0.0
    for i in itertools.count():
        if point.requests is not None and i >= point.requests:
            break
        scheduled = started + int(offset * 1e9)
        if deadline is not None and scheduled >= deadline:
            break
        wait = (scheduled - time.perf_counter_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(gated(i, scheduled)))
        gap = 1 / point.rate
        offset += rng.expovariate(point.rate) if point.arrival == "poisson" else gap
    await asyncio.gather(*tasks)
