"""Measured memory of an engine: the resident set of its whole process tree, shown
beside the plan (GPU allocations a driver keeps outside the RSS are not in it)."""

from __future__ import annotations

import psutil


def tree_rss(pid: int) -> int | None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


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
