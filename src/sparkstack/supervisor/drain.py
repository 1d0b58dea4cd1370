"""Draining a model before it is put away (evicted, unloaded, put to sleep or
stopped for memory): new requests are held back in the gateway's queue while
the ones in flight finish, bounded by the model's ``drain_timeout``. When the
drain ends (the model put away, or the drain given up) the held requests go
on: they find the model stopped or asleep and wake it, or find it serving.

The in-flight count is the gateway's (``ModelRuntime.inflight``); it is polled
every ``POLL`` seconds, which bounds how late an emptied model is noticed and
costs nothing on the request path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sparkstack.supervisor.runtime import ModelRuntime

log = logging.getLogger("sparkstack.supervisor")
POLL = 0.05


def end_drain(runtime: ModelRuntime) -> None:
    """Let the requests held back by a drain go on."""
    runtime.draining = False
    for listener in list(runtime.resume_listeners):
        listener()


@asynccontextmanager
async def drained(runtime: ModelRuntime) -> AsyncIterator[bool]:
    """Hold new requests for ``runtime`` back and wait until none is in flight, at
    most its ``drain_timeout``. Yields whether it
    drained; the body puts the model away (or not, when it did not drain); new
    requests are let go on when the body is done. Setting the flag happens before
    the first await, so a caller that just saw the model idle cannot lose that."""
    bound = runtime.spec.drain_timeout
    if runtime.draining:  # another drain holds it: this one waits inside it
        yield await _wait_empty(runtime, bound)
        return
    runtime.draining = True
    try:
        if runtime.inflight:
            log.info("%s: draining %d requests in flight (at most %gs)", runtime.name,
                     runtime.inflight, bound)  # fmt: skip
        yield await _wait_empty(runtime, bound)
    finally:
        end_drain(runtime)


async def _wait_empty(runtime: ModelRuntime, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while runtime.inflight > 0:
        if time.monotonic() >= deadline:
            log.warning("%s: %d requests still in flight after draining %gs", runtime.name,
                        runtime.inflight, bound)  # fmt: skip
            return False
        await asyncio.sleep(POLL)
    return True
