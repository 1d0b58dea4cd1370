"""The event log: model lifecycle transitions and supervisor events, kept in a
bounded ring for the status document and fanned out to live SSE subscribers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

RING = 200
SUBSCRIBER_BACKLOG = 256
KEEPALIVE_S = 15.0


class Event(BaseModel):
    seq: int
    time: float
    """Unix time."""
    model: str
    event: str
    """A state (starting, ready, stopped, failed, ...) or an event (idle, evicted, ...)."""
    detail: str | None = None


class EventLog:
    """One event loop owns it: appends never block, a slow subscriber drops its
    oldest events rather than holding the loop or growing without bound."""

    def __init__(self, size: int = RING) -> None:
        self.recent: deque[Event] = deque(maxlen=size)
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._seq = 0

    def add(self, model: str, event: str, detail: str | None = None) -> Event:
        self._seq += 1
        item = Event(seq=self._seq, time=time.time(), model=model, event=event, detail=detail)
        self.recent.append(item)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item)
        return item

    def last(self, count: int, model: str | None = None) -> list[Event]:
        items = [e for e in self.recent if model is None or e.model == model]
        return items[-count:]

    def subscribe(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every live stream (the gateway is shutting down)."""
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


def sse(event: Event) -> bytes:
    return f"id: {event.seq}\nevent: model_event\ndata: {event.model_dump_json()}\n\n".encode()


async def stream_events(
    log: EventLog, write: Callable[[bytes], Awaitable[None]], backlog: int = 20
) -> None:
    """The last ``backlog`` events, then each new one as it happens, with an SSE
    comment every ``KEEPALIVE_S`` so proxies keep the stream open."""
    queue = log.subscribe()
    try:
        for event in log.last(backlog):
            await write(sse(event))
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await write(b": keepalive\n\n")
                continue
            if item is None:
                return
            await write(sse(item))
    finally:
        log.unsubscribe(queue)
