"""Probe this machine as the planner does (psutil + NVML) and, where a CUDA GPU
and torch are present, measure one process's CUDA context and first-matmul cost
through NVML's per-process figure - the runtime overhead the planner counts per
engine process on discrete GPUs.

usage: python benchmarks/probe_machine.py [OUT.json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from sparkstack.machine import probe


def cuda_context_cost() -> dict[str, Any]:
    try:
        import pynvml
        import torch
    except ImportError as exc:
        return {"skipped": f"no {exc.name}"}
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def own_bytes() -> int:
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid():
                return int(proc.usedGpuMemory or 0)
        return 0

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    time.sleep(0.5)
    context = own_bytes()
    a = torch.randn(1024, 1024, device="cuda")
    (a @ a).sum().item()
    time.sleep(0.5)
    after_matmul = own_bytes()
    pynvml.nvmlShutdown()
    return {
        "context_bytes": context,
        "after_first_matmul_bytes": after_matmul,
        "torch_allocated_bytes": int(torch.cuda.memory_allocated()),
        "torch_version": torch.__version__,
    }


def main() -> None:
    result = {"probe": probe().model_dump(), "cuda_process": cuda_context_cost()}
    text = json.dumps(result, indent=2)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
