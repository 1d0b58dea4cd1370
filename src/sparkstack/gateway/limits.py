"""Per-key request rate (token bucket) and concurrency limits (queued requests
count for their key), and the cap on requests in flight for the whole gateway
(queued ones do not count: proxy.py steps them out while they wait). All in-process and O(1)
per request. Each model's own cap, and the queue behind it, is model_queue.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sparkstack.errors import GatewayError
from sparkstack.gateway.keys import KeyRecord


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class Limiter:
    max_inflight: int
    inflight: int = 0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _per_key: dict[str, int] = field(default_factory=dict)

    def admit(self, key: KeyRecord | None) -> None:
        """Count a request in, or raise the 429/503 that says which limit it hit."""
        if self.inflight >= self.max_inflight:
            raise GatewayError(
                f"The gateway has {self.inflight} requests in flight, its limit "
                "(gateway.max_inflight); retry shortly.",
                status=503, error_type="server_overloaded", code="too_many_requests_in_flight",
            )  # fmt: skip
        if key is not None:
            if key.rate_per_minute is not None:
                self._take_token(key)
            if (
                key.max_concurrency is not None
                and self._per_key.get(key.id, 0) >= key.max_concurrency
            ):
                raise GatewayError(
                    f"Key {key.name!r} already has {key.max_concurrency} requests in flight, "
                    "its concurrency limit; wait for one to finish.",
                    status=429, error_type="requests", code="concurrency_limit_exceeded",
                )  # fmt: skip
            self._per_key[key.id] = self._per_key.get(key.id, 0) + 1
        self.inflight += 1

    def release(self, key: KeyRecord | None) -> None:
        self.inflight -= 1
        if key is not None:
            self._per_key[key.id] -= 1

    def _take_token(self, key: KeyRecord) -> None:
        assert key.rate_per_minute is not None
        now = time.monotonic()
        bucket = self._buckets.get(key.id)
        capacity = float(key.rate_per_minute)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * capacity / 60)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) * 60 / capacity
            raise GatewayError(
                f"Rate limit of key {key.name!r} reached ({key.rate_per_minute} requests per "
                f"minute); retry in {wait:.1f} s.",
                status=429, error_type="requests", code="rate_limit_exceeded",
            )  # fmt: skip
        bucket.tokens -= 1
