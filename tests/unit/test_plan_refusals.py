"""The planner refuses instead of guessing (issue 11, point 3; issue 18, point 4):
a config.json with a missing or contradictory field, a model path that does not
exist, and a device that is neither cuda nor cpu fail `plan` and `up` with a
message naming the field or path. Nothing is started: `up` plans first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparkstack.errors import StackError
from sparkstack.stack import load_stack_text

LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "torch_dtype": "bfloat16",
}


def without(*keys: str, **changes: Any) -> dict[str, Any]:
    config = {k: v for k, v in LLAMA.items() if k not in keys}
    return {**config, **changes}


MALFORMED = {
    "no heads": (without("num_attention_heads"), ["num_attention_heads", "n_head", "'llama'"]),
    "no layers": (without("num_hidden_layers"), ["num_hidden_layers", "n_layer", "'llama'"]),
    "no hidden size": (without("hidden_size"), ["hidden_size", "n_embd", "'llama'"]),
    "kv heads do not divide heads": (
        without(num_key_value_heads=3),
        ["num_key_value_heads 3", "num_attention_heads 4"],
    ),
    "hidden not a multiple of heads": (
        without(hidden_size=66),
        ["hidden_size 66", "num_attention_heads 4", "head_dim"],
    ),
    "layer_types too short": (
        without(layer_types=["full_attention"] * 3),
        ["layer_types names 3 layers", "num_hidden_layers is 4"],
    ),
    "sliding layers without a window": (
        without(layer_types=["sliding_attention", "full_attention"] * 2),
        ["sliding_window", "'llama'"],
    ),
    "MLA without its rope dim": (
        without(model_type="deepseek_v2", kv_lora_rank=32),
        ["qk_rope_head_dim", "'deepseek_v2'"],
    ),
    "heads not an integer": (without(num_attention_heads="4"), ["num_attention_heads", "'4'"]),
    "unknown layer kind": (
        without(layer_types=["full_attention", "chunked_attention"] * 2),
        ["'chunked_attention'"],
    ),
}


def write_stack(folder: Path, model: str, device: str = "cpu") -> Path:
    stack = folder / "stack.yaml"
    stack.write_text(
        f"machine: {{total_gib: 16, device: {device}}}\nhost_reserve_gib: 0\n"
        f"gateway: {{listen: '127.0.0.1:1'}}\n"
        f"models:\n  tiny:\n    engine: vllm\n    model: {model}\n    context: 1024\n"
    )
    return stack


def sparkstack(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(folder / "state"),
        "SPARKSTACK_CONFIG_DIR": str(folder / "config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "sparkstack", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=folder,
    )  # fmt: skip


def assert_refused(folder: Path, stack: Path, expected: list[str]) -> None:
    for command in ("plan", "up"):
        result = sparkstack(folder, command, str(stack))
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        message = result.stderr
        assert message.startswith("error: models.tiny.model: "), (command, message)
        for part in expected:
            assert part in message, (command, part, message)
        assert "Traceback" not in message
        assert not (folder / "state" / "run.json").exists()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_config_fails_plan_and_up_naming_the_field(tmp_path: Path, case: str) -> None:
    config, expected = MALFORMED[case]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config))
    assert_refused(tmp_path, write_stack(tmp_path, str(model)), expected)


@pytest.mark.parametrize("path", ["x.gguf", "./missing-folder", "models/nested/missing"])
def test_missing_model_path_fails_plan_and_up_naming_the_path(tmp_path: Path, path: str) -> None:
    assert_refused(tmp_path, write_stack(tmp_path, path), [path.removeprefix("./"), "no such"])


def test_device_gpu_is_refused_at_load_with_the_allowed_values() -> None:
    with pytest.raises(StackError) as info:
        load_stack_text(
            "machine: {total_gib: 16, device: gpu}\n"
            "models:\n  m:\n    engine: vllm\n    model: org/name\n",
            "stack.yaml",
        )
    message = str(info.value)
    assert "machine.MachineSpec.device: Input should be 'cuda' or 'cpu'" in message
