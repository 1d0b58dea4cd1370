"""Measured memory of an engine: the resident set of its whole process tree, shown
beside the plan (GPU allocations a driver keeps outside the RSS are not in it)."""

from __future__ import annotations

import psutil

from sparkstack.supervisor.process import tree_rss


def measure_all(pids: dict[str, int]) -> dict[str, int]:
    """model -> tree RSS, for the pids still alive (run in a worker thread)."""
    out: dict[str, int] = {}
    for model, pid in pids.items():
        rss = tree_rss(pid)
        if rss is not None:
            out[model] = rss
    return out


def host_available() -> int:
    return int(psutil.virtual_memory().available)
