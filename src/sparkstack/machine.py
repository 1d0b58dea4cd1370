"""Machine profiles: what memory a plan may use, whether it is unified (CPU and
GPU share it, as on a DGX Spark), and its bandwidth for the decode ceiling.

A leaf module: it imports nothing from sparkstack but ``errors``, so every layer
(the stack schema included, for ``Device``) may use it.

Probed: psutil for host memory (MemAvailable, never MemFree) and NVML where
present. On GB10, NVML reports no memory figures ("Not Supported"): a GPU whose
memory NVML cannot report is treated as unified, sized by host memory.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import psutil
from pydantic import BaseModel, Field

from sparkstack.errors import StackError

GIB = 2**30
Device = Literal["cuda", "cpu"]
"""Where the engines' memory lives."""
DEVICES: tuple[str, ...] = get_args(Device)


class MachineProfile(BaseModel):
    name: str
    device: Device = Field(description="cuda or cpu: where the engines' memory lives.")
    total_bytes: int = Field(description="Memory engines draw from (GPU memory, or RAM).")
    unified: bool = Field(description="CPU and GPU share one pool (DGX Spark, CPU-only).")
    bandwidth_bytes_per_s: float | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    available_bytes: int | None = Field(
        default=None, description="Free now (MemAvailable / NVML free), when probed."
    )
    probed: bool = False


PROFILES: dict[str, MachineProfile] = {
    # 128 GB LPDDR5x shared by CPU and GPU; CUDA sees 121.69 GiB
    # (torch total_memory 130,663,231,488 B); 273 GB/s (memory-planning.md §6).
    "dgx-spark": MachineProfile(
        name="dgx-spark",
        device="cuda",
        total_bytes=130_663_231_488,
        unified=True,
        bandwidth_bytes_per_s=273e9,
        gpu="NVIDIA GB10",
        compute_capability="12.1",
    ),
    "h100-80gb": MachineProfile(
        name="h100-80gb",
        device="cuda",
        total_bytes=85_520_809_984,
        unified=False,
        bandwidth_bytes_per_s=3.35e12,
        gpu="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
    ),
}


def _probe_nvml() -> MachineProfile | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (NVMLError has many subclasses; no GPU is fine)
        return None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        try:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        except pynvml.NVMLError:
            memory = None  # GB10: "Not Supported" - unified memory
        if memory is None:
            host = psutil.virtual_memory()
            return MachineProfile(
                name=f"probed unified ({name})",
                device="cuda",
                total_bytes=host.total,
                unified=True,
                gpu=name,
                compute_capability=f"{major}.{minor}",
                available_bytes=host.available,
                probed=True,
                bandwidth_bytes_per_s=273e9 if "GB10" in name else None,
            )
        return MachineProfile(
            name=f"probed {name}",
            device="cuda",
            total_bytes=int(memory.total),
            unified=False,
            gpu=name,
            compute_capability=f"{major}.{minor}",
            available_bytes=int(memory.free),
            probed=True,
        )
    finally:
        pynvml.nvmlShutdown()


def probe() -> MachineProfile:
    """This machine: its first NVIDIA GPU, or its RAM when it has none."""
    gpu = _probe_nvml()
    if gpu is not None:
        return gpu
    host = psutil.virtual_memory()
    return MachineProfile(
        name="probed cpu",
        device="cpu",
        total_bytes=host.total,
        unified=True,
        available_bytes=host.available,
        probed=True,
    )


class MachineNumbers(Protocol):
    """A machine given by its numbers (the stack file's ``MachineSpec``)."""

    @property
    def total_gib(self) -> float: ...
    @property
    def bandwidth_gbs(self) -> float | None: ...
    @property
    def unified(self) -> bool: ...
    @property
    def device(self) -> Device: ...


def resolve_machine(machine: str | MachineNumbers) -> MachineProfile:
    """The profile a stack's ``machine:`` names (``auto`` probes this machine)."""
    if not isinstance(machine, str):
        return MachineProfile(
            name="explicit",
            device=machine.device,
            total_bytes=int(machine.total_gib * GIB),
            unified=machine.unified,
            bandwidth_bytes_per_s=machine.bandwidth_gbs * 1e9 if machine.bandwidth_gbs else None,
        )
    if machine == "auto":
        return probe()
    if machine in PROFILES:
        return PROFILES[machine]
    raise StackError(
        f"machine: unknown profile {machine!r}; use auto, one of {', '.join(PROFILES)}, "
        "or {total_gib: N, bandwidth_gbs: N, unified: true}"
    )


DEFAULT_HOST_RESERVE = 20 * GIB
SMALL_MACHINE = 64 * GIB


def host_reserve_bytes(reserve_gib: float | None, total_bytes: int) -> int:
    """The memory never handed to engines: the stack's ``host_reserve_gib``, else 20
    GiB (seed 002: leave the OS ~20 GB), or 15% of a machine under 64 GiB, where 20
    GiB would leave the engines almost nothing."""
    if reserve_gib is not None:
        return int(reserve_gib * GIB)
    if total_bytes < SMALL_MACHINE:
        return int(total_bytes * 0.15)
    return DEFAULT_HOST_RESERVE
