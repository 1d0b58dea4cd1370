"""A GGUF header reader: metadata key/values and tensor infos (name, shape, ggml
type), read with ``struct`` from the file's start; tensor data is never read.

Layout (ggml docs/gguf.md): magic ``GGUF``, version u32, tensor count u64,
metadata count u64, metadata (key string, value type u32, value), tensor infos
(name, n_dims u32, dims u64 × n_dims, type u32, offset u64). Strings are a u64
length and UTF-8 bytes. Large arrays (the tokenizer's) are skipped, keeping
their length only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.quant_formats import GGML_TYPES

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY_MAX = 4096


class GGUFError(SparkstackError):
    """The file is not a GGUF file this reader understands."""


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    type_name: str
    elements: int
    nbytes: int


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, object] = field(default_factory=dict)
    tensors: list[GGUFTensor] = field(default_factory=list)

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.metadata.get(key, default)
        return int(value) if isinstance(value, int | float) else default


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def read(self, fmt: str) -> object:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise GGUFError("the GGUF header ends early (truncated file?)")
        return struct.unpack(fmt, data)[0]

    def u32(self) -> int:
        value = self.read("<I")
        assert isinstance(value, int)
        return value

    def u64(self) -> int:
        value = self.read("<Q")
        assert isinstance(value, int)
        return value

    def string(self) -> str:
        length = self.u64()
        return self.handle.read(length).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> object:
        if vtype in _SCALARS:
            return self.read(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.u32()
            count = self.u64()
            if count > _KEEP_ARRAY_MAX:
                self.skip_array(item_type, count)
                return f"<array of {count}>"
            return [self.value(item_type) for _ in range(count)]
        raise GGUFError(f"unknown GGUF value type {vtype}")

    def skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.handle.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
        elif item_type == _STRING:
            for _ in range(count):
                self.handle.seek(self.u64(), 1)
        else:
            for _ in range(count):
                self.value(item_type)


def read_gguf(path: Path) -> GGUFFile:
    try:
        with path.open("rb") as handle:
            reader = _Reader(handle)
            if handle.read(4) != b"GGUF":
                raise GGUFError(f"{path} is not a GGUF file (no GGUF magic)")
            gguf = GGUFFile(path=path, version=reader.u32())
            n_tensors, n_kv = reader.u64(), reader.u64()
            for _ in range(n_kv):
                key = reader.string()
                gguf.metadata[key] = reader.value(reader.u32())
            for _ in range(n_tensors):
                name = reader.string()
                dims = tuple(reader.u64() for _ in range(reader.u32()))
                type_id = reader.u32()
                reader.u64()  # data offset
                type_name, block, size = GGML_TYPES.get(type_id, (f"type{type_id}", 1, 0))
                elements = 1
                for dim in dims:
                    elements *= dim
                gguf.tensors.append(
                    GGUFTensor(name, dims, type_name, elements, elements * size // block)
                )
            return gguf
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror}") from exc
