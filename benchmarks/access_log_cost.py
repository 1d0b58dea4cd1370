"""What the access log and request ids cost the gateway per request, in process
(deterministic, unlike requests/s on a shared 2-core machine): on the request's
path (a request id accepted or made, the forwarding check, one entry recorded)
and off it (formatting an entry into its JSON line in the background flush,
and a whole flush of 10,000 entries to a file).

usage: python -m benchmarks.access_log_cost [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from sparkstack.gateway.access_log import AccessEntry, AccessLog, format_entry
from sparkstack.gateway.context import Downstream, RequestContext
from sparkstack.gateway.request_id import accept_request_id, forwardable

RESULTS = Path(__file__).resolve().parent / "results"


class _Down(Downstream):
    status = 200

    @property
    def started(self) -> bool:
        return True

    def send_now(self, status: int, content_type: str, body: bytes) -> None: ...

    async def start_stream(self, status: int, content_type: str) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self) -> None: ...


def per_call_ns(work: Callable[[], object], number: int = 100_000) -> float:
    """The median of 7 timings, nanoseconds per call."""
    runs = timeit.repeat(work, number=number, repeat=7)
    return round(statistics.median(runs) / number * 1e9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS / "access_log_cost.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        access = AccessLog(Path(folder) / "gateway.jsonl")
        ctx = RequestContext(path="/v1/chat/completions", query="", body=b"", model="smol",
                             request_id="trace-1", bytes_out=512, ttft=0.01)  # fmt: skip
        down = _Down()
        entry = AccessEntry(time.time(), "6f1c2a7e-9b3d-4c1a-0000-00000000002a", "POST",
                            "/v1/chat/completions", "smol", "alice", 200, 512, 0.012, 0.004,
                            "http://127.0.0.1:9000")  # fmt: skip

        def record() -> None:
            access.request_done(ctx, down)
            if len(access.buffer) > 50_000:
                access.buffer.clear()

        stamps: dict[int, str] = {}
        hot = {
            "accept_client_id_ns": per_call_ns(lambda: accept_request_id("trace-1")),
            "new_id_ns": per_call_ns(lambda: accept_request_id(None)),
            "forwardable_uuid_check_ns": per_call_ns(lambda: forwardable(entry.request_id, True)),
            "record_entry_ns": per_call_ns(record),
        }
        format_ns = per_call_ns(lambda: format_entry(entry, stamps))

        async def flush_10k() -> float:
            access.buffer = [entry] * 10_000
            started = time.perf_counter()
            await access.flush()
            return (time.perf_counter() - started) * 1000

        flush_ms = statistics.median(asyncio.run(flush_10k()) for _ in range(5))
    result = {
        "machine": {"cpus": os.cpu_count()},
        "hot_path": hot,
        "hot_path_total_ns": round(
            hot["new_id_ns"] + hot["forwardable_uuid_check_ns"] + hot["record_entry_ns"], 1
        ),
        "background_format_ns_per_entry": format_ns,
        "background_flush_10k_entries_ms": round(flush_ms, 2),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
