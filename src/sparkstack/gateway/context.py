"""One forwarded request as the forwarding steps see it: ``RequestContext`` (what
the client sent and what the steps found out about it) and ``Downstream`` (the
response side it is answered through). Both HTTP servers (the lean one in
fastserver.py and aiohttp's in proxy.py) fill the first and implement the second,
so auth, limits, wake-wait and relay run the same under either."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sparkstack.errors import GatewayError
from sparkstack.gateway.keys import KeyRecord
from sparkstack.gateway.openai_errors import error_json
from sparkstack.supervisor.runtime import ModelRuntime

JSON = "application/json"
EVENT_STREAM = "text/event-stream"


@dataclass(slots=True)
class RequestContext:
    path: str
    """The route path, without the query string."""
    query: str
    body: bytes
    authorization: str | None = None
    content_type: str | None = None
    priority: str | None = None
    """The X-Sparkstack-Priority header, if sent (model_queue.py)."""
    started: float = field(default_factory=time.perf_counter)
    key: KeyRecord | None = None
    model: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    runtime: ModelRuntime | None = None
    request_id: str = ""
    """The client's x-request-id as sent; the id in use once ``Forwarder`` accepted it."""
    ttft: float | None = None
    """Seconds until the first streamed byte was relayed (streams only)."""
    bytes_out: int = 0
    """Body bytes answered to the client."""


class Downstream(ABC):
    """The client's side of one request: a whole answer, or a stream of writes."""

    cors_origin: str | None = None
    """An allowed foreign browser origin, echoed in Access-Control-Allow-Origin."""
    status: int = 499
    """The status answered; 499 until one is (the client went away first)."""
    request_id: str = ""
    """Sent back as x-request-id."""
    retry_after: int | None = None
    """Seconds sent as Retry-After with the answer (a refused wait for a load)."""

    @property
    @abstractmethod
    def started(self) -> bool:
        """Whether the status line already went out (errors must then go in-band)."""

    @abstractmethod
    def send_now(self, status: int, content_type: str, body: bytes) -> None:
        """Answer at once (the lean server writes it; aiohttp sends it on return)."""

    async def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_now(status, content_type, body)

    def send_error_now(self, error: GatewayError) -> int:
        """Answer an OpenAI-shaped error at once; the number of body bytes."""
        body = error_json(error)
        self.retry_after = error.retry_after
        self.send_now(error.status, JSON, body)
        return len(body)

    @abstractmethod
    async def start_stream(self, status: int, content_type: str) -> None: ...

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def end(self) -> None: ...
