"""Bytes per element of every weight storage format sparkstack knows.

GGUF/ggml types are (elements per block, bytes per block) from ggml's type
table (ggml/src/ggml.c ``type_traits``); checkpoint formats are bits per weight
including their scales (see shared/reference/memory-planning.md §4).
"""

from __future__ import annotations

# ggml type id -> (name, block elements, block bytes)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

GGML_BY_NAME = {name: (block, size) for name, block, size in GGML_TYPES.values()}


def ggml_bytes(type_name: str, elements: int) -> float:
    """Bytes of ``elements`` values stored as ggml type ``type_name`` (f16, q8_0, ...)."""
    block, size = GGML_BY_NAME[type_name.upper()]
    return elements * size / block


# Checkpoint formats: bits per weight, scales included.
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0,
    "BF16": 16.0,
    "F16": 16.0,
    "FP8": 8.0,
    "FP8_BLOCK": 8.0 + 32 / (128 * 128),
    "MXFP4": 4.25,
    "NVFP4": 4.5,
    "INT4_G128": 4.0 + 16 / 128 + 4 / 128,
}

# safetensors dtype -> bytes per element
SAFETENSORS_DTYPES: dict[str, float] = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1,
    "BOOL": 1, "F4": 0.5,
}  # fmt: skip

TORCH_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float": 4, "half": 2}
