"""Safetensors headers: each file starts with a u64 header length and a JSON map
of tensor name -> dtype, shape. From it: exact parameter counts and bytes per
storage format, packed quantized formats recognised by their tensor names."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.quant_formats import SAFETENSORS_DTYPES

MAX_HEADER_BYTES = 100 * 2**20


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return int(self.numel * SAFETENSORS_DTYPES.get(self.dtype, 0))


def parse_header(data: bytes) -> list[TensorInfo]:
    try:
        header = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SparkstackError(f"a safetensors header is not JSON: {exc}") from exc
    return [
        TensorInfo(name, str(info["dtype"]), tuple(int(d) for d in info["shape"]))
        for name, info in header.items()
        if name != "__metadata__"
    ]


def header_length(prefix: bytes) -> int:
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES:
        raise SparkstackError(f"a safetensors header claims {length} bytes; not a safetensors file")
    return int(length)


def read_local_headers(folder: Path) -> list[TensorInfo]:
    tensors: list[TensorInfo] = []
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            length = header_length(handle.read(8))
            tensors.extend(parse_header(handle.read(length)))
    return tensors


@dataclass
class WeightSummary:
    total_params: int = 0
    expert_params: int = 0
    bytes_by_format: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_format.values())


def _format_of(tensor: TensorInfo, names: set[str]) -> tuple[str, int]:
    """(storage format, parameters) of one tensor, unpacking packed 4-bit formats."""
    base = tensor.name.rsplit(".", 1)[0]
    if tensor.name.endswith(("_blocks", "_scales")) and tensor.dtype == "U8":
        # gpt-oss MXFP4: *_blocks hold two E2M1 values per byte, *_scales one E8M0 per 32
        return "MXFP4", tensor.numel * 2 if tensor.name.endswith("_blocks") else 0
    if tensor.name.endswith(".weight") and tensor.dtype == "U8" and f"{base}.weight_scale" in names:
        return "NVFP4", tensor.numel * 2  # modelopt NVFP4: packed E2M1 + FP8 scale per 16
    if tensor.name.endswith((".weight_scale", ".weight_scale_2", ".input_scale")):
        packed = f"{base}.weight" in names and tensor.dtype in {"F8_E4M3", "F32"}
        return ("NVFP4" if tensor.name.endswith(".weight_scale") and packed else "SCALES"), 0
    if tensor.name.endswith((".qweight", ".qzeros", ".scales", ".g_idx")):
        params = tensor.numel * 8 if tensor.name.endswith(".qweight") else 0
        return "INT4 (GPTQ/AWQ)", params
    if tensor.name.endswith(".weight_scale_inv"):
        return "FP8", 0
    if tensor.dtype.startswith("F8"):
        return "FP8", tensor.numel
    return tensor.dtype, tensor.numel


def summarize(tensors: list[TensorInfo]) -> WeightSummary:
    names = {t.name for t in tensors}
    summary = WeightSummary()
    for tensor in tensors:
        fmt, params = _format_of(tensor, names)
        summary.bytes_by_format[fmt] = summary.bytes_by_format.get(fmt, 0) + tensor.nbytes
        summary.total_params += params
        if ".experts." in tensor.name or tensor.name.split(".")[-2:-1] == ["experts"]:
            summary.expert_params += params
    return summary
