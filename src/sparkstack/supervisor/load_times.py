"""How long a model takes to start, learned from its past starts and kept across
restarts of sparkstack: a small JSON file in the state dir with the last few
cold-start durations (launch until ready, warm-up included) of each model,
keyed by its name and a fingerprint of what changes its start time (engine,
model, context, flags, image; not its policy, aliases or timeouts). The
expected load time is the median of those: one slow start (a cold page cache)
does not move it much."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import threading
from pathlib import Path

from sparkstack.stack.schema import ModelSpec

log = logging.getLogger("sparkstack.supervisor")

KEEP = 5
"""Starts remembered per model and fingerprint."""
_NOT_START_TIME = frozenset({
    "name", "aliases", "policy", "idle_timeout", "max_inflight", "liveness_interval",
    "liveness_timeout", "liveness_failures", "stall_timeout", "startup_timeout",
    "stop_timeout", "url", "api_key_env",
})  # fmt: skip
"""ModelSpec fields that do not change how long the engine takes to start."""


def fingerprint(spec: ModelSpec) -> str:
    """A short hash of the spec's fields that change its start time."""
    fields = spec.model_dump(mode="json", exclude=set(_NOT_START_TIME))
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_key(spec: ModelSpec) -> str:
    return f"{spec.name}@{fingerprint(spec)}"


class LoadTimes:
    """Past start durations per model; ``expected`` reads, ``record`` learns."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._writing = threading.Lock()
        self.starts: dict[str, list[float]] = self._read() if path is not None else {}

    def _read(self) -> dict[str, list[float]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the load-time file %s (%s); it is rewritten after the "
                        "next start", self.path, exc)  # fmt: skip
            return {}
        starts = data.get("starts") if isinstance(data, dict) else None
        if not isinstance(starts, dict):
            return {}
        return {
            str(key): [float(s) for s in values if isinstance(s, int | float) and s > 0][-KEEP:]
            for key, values in starts.items()
            if isinstance(values, list)
        }

    def expected(self, spec: ModelSpec) -> float | None:
        """The median of the last starts with this fingerprint; None before the first."""
        past = self.starts.get(entry_key(spec))
        return statistics.median(past) if past else None

    def record(self, spec: ModelSpec, seconds: float) -> float | None:
        """Learn one start; returns the new expected load time."""
        key = entry_key(spec)
        self.starts[key] = [*self.starts.get(key, []), round(seconds, 3)][-KEEP:]
        return self.expected(spec)

    def dumps(self) -> str:
        """The file's text now (taken on the event loop, which alone changes it)."""
        return json.dumps({"version": 1, "keep": KEEP, "starts": self.starts}, indent=1)

    def write(self, text: str) -> None:
        """Write the file atomically (blocking: run it in a worker thread)."""
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with self._writing:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(self.path)
            except OSError as exc:
                log.warning("cannot write the load-time file %s: %s", self.path, exc)
