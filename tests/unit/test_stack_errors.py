"""Stack-file errors name the file, the line, the field and the fix (issue 2, point 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkstack.engines.registry import known_engines
from sparkstack.errors import StackError
from sparkstack.stack import Policy, load_stack, load_stack_text
from sparkstack.stack.demo import demo_stack


def error_of(text: str) -> str:
    with pytest.raises(StackError) as info:
        load_stack_text(text, "stack.yaml", known_engines())
    return str(info.value)


def test_unknown_engine_names_line_field_and_choices() -> None:
    message = error_of(
        """
models:
  brain:
    engine: vllmm
    model: openai/gpt-oss-120b
"""
    )
    assert message.startswith("stack.yaml line 4: models.brain.engine: unknown engine 'vllmm'")
    assert "use one of: external, llamacpp, sglang, trtllm, vllm" in message


def test_missing_model_names_field_and_fix() -> None:
    message = error_of(
        """
models:
  brain:
    engine: vllm
    context: 8192
"""
    )
    assert message.startswith("stack.yaml line 3: models.brain:")
    assert "engine vllm needs model:" in message
    assert "HF repo id" in message


def test_missing_engine_is_required_field() -> None:
    message = error_of("models:\n  brain:\n    model: x\n")
    assert "models.brain.engine: required field 'engine' is missing" in message
    assert "add it" in message


def test_duplicate_alias_names_both_models() -> None:
    message = error_of(
        """
models:
  brain:
    engine: vllm
    model: openai/gpt-oss-120b
    aliases: [architect, fast]
  sprinter:
    engine: vllm
    model: openai/gpt-oss-20b
    aliases: [fast]
"""
    )
    assert message.startswith("stack.yaml line 2: models:")
    assert "models.sprinter.aliases: 'fast' is already a name or alias of model 'brain'" in message
    assert "rename or remove it" in message


def test_alias_equal_to_another_model_name() -> None:
    message = error_of(
        "models:\n  a: {engine: vllm, model: x}\n  b: {engine: vllm, model: y, aliases: [a]}\n"
    )
    assert "models.b.aliases: 'a' is already a name or alias of model 'a'" in message


def test_bad_yaml_names_line_and_column() -> None:
    message = error_of("models:\n  brain:\n    engine: vllm\n   model: [unclosed\n")
    assert message.startswith("stack.yaml line 4 column")
    assert "invalid YAML" in message
    assert "indentation or quoting" in message


def test_unknown_field_lists_allowed_fields() -> None:
    message = error_of("models:\n  brain:\n    engine: vllm\n    model: x\n    contxt: 4096\n")
    assert "stack.yaml line 5: models.brain.contxt: unknown field 'contxt'" in message
    assert "allowed here:" in message and "context" in message


def test_bad_policy_and_duration() -> None:
    message = error_of(
        "models:\n  a:\n    engine: vllm\n    model: x\n    policy: lazy\n    idle_timeout: soon\n"
    )
    assert "line 5: models.a.policy:" in message and "'always_on' or 'on_demand'" in message
    assert "line 6: models.a.idle_timeout: 'soon' is not a duration" in message


def test_external_needs_url() -> None:
    message = error_of("models:\n  remote:\n    engine: external\n")
    assert "engine external needs url:" in message


def test_not_a_mapping_and_empty_models() -> None:
    assert "a stack file is a mapping" in error_of("- a\n- b\n")
    assert "models: is empty" in error_of("models: {}\n")


def test_bad_listen() -> None:
    message = error_of("gateway: {listen: 'localhost'}\nmodels:\n  a: {engine: vllm, model: x}\n")
    assert "line 1: gateway.listen: 'localhost' is not host:port" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no such stack file"):
        load_stack(tmp_path / "nope.yaml")


def test_valid_stack_parses_durations_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        """
host_reserve_gib: 20
gateway: {listen: "0.0.0.0:9000"}
models:
  brain:
    engine: vllm
    model: openai/gpt-oss-120b
    aliases: [architect]
    context: 65536
    concurrency: 8
  sprinter:
    engine: vllm
    model: openai/gpt-oss-20b
    policy: on_demand
    idle_timeout: 30m
"""
    )
    stack = load_stack(path)
    assert stack.gateway.port == 9000 and stack.gateway.host == "0.0.0.0"
    assert stack.models["sprinter"].idle_timeout == 1800.0
    assert stack.models["sprinter"].policy is Policy.ON_DEMAND
    assert stack.models["brain"].names == ["brain", "architect"]


def test_demo_stack_is_valid() -> None:
    stack = demo_stack()
    assert {m.engine for m in stack.models.values()} == {"llamacpp", "vllm"}
