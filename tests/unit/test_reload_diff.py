"""Hot reload on its own, without processes (issue 15): what the diff of two
stacks says per model, which gateway settings cannot change live, what a
reload starts, how draining waits, and the rejections a reload reports."""

from __future__ import annotations

import asyncio
import time

import pytest

from sparkstack.engines.registry import get_engine
from sparkstack.errors import StackError
from sparkstack.stack import load_stack_text
from sparkstack.stack.diff import diff_stacks
from sparkstack.stack.schema import Stack
from sparkstack.supervisor.reload import ReloadResult, drain, to_start
from sparkstack.supervisor.runtime import ModelRuntime

BASE = """
gateway: {listen: "127.0.0.1:8080", wake_wait: 600}
models:
  keep: {engine: llamacpp, model: a.gguf, context: 512}
  edit: {engine: llamacpp, model: b.gguf, context: 512}
  gone: {engine: llamacpp, model: c.gguf, policy: on_demand}
"""


def stack(text: str) -> Stack:
    return load_stack_text(text, "stack.yaml")


def test_the_diff_sorts_every_model() -> None:
    new = stack(
        """
models:
  keep: {engine: llamacpp, model: a.gguf, context: 512}
  edit: {engine: llamacpp, model: b.gguf, context: 1024}
  fresh: {engine: llamacpp, model: d.gguf, policy: on_demand}
"""
    )
    diff = diff_stacks(stack(BASE), new)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (
        ["fresh"],
        ["gone"],
        ["edit"],
        ["keep"],
    )
    assert diff.blocked is None and not diff.empty


def test_the_same_file_is_an_empty_diff() -> None:
    diff = diff_stacks(stack(BASE), stack(BASE))
    assert diff.empty
    assert diff.unchanged == ["keep", "edit", "gone"]


def test_an_alias_or_policy_is_a_change() -> None:
    aliased = stack(BASE.replace("context: 512}\n  edit", "context: 512, aliases: [k]}\n  edit"))
    assert diff_stacks(stack(BASE), aliased).changed == ["keep"]
    always = stack(BASE.replace("c.gguf, policy: on_demand", "c.gguf"))
    assert diff_stacks(stack(BASE), always).changed == ["gone"]


def test_container_settings_change_every_model() -> None:
    podman = stack("container: {cli: podman}\n" + BASE)
    diff = diff_stacks(stack(BASE), podman)
    assert sorted(diff.changed) == ["edit", "gone", "keep"]
    assert diff.unchanged == []


def test_gateway_settings_that_need_a_restart_are_named() -> None:
    moved = stack(BASE.replace("127.0.0.1:8080", "127.0.0.1:9090").replace("600", "30"))
    diff = diff_stacks(stack(BASE), moved)
    assert diff.kept_settings == ["gateway.listen", "gateway.wake_wait"]
    assert diff.changed == [] and not diff.empty
    drain_only = stack(BASE.replace("wake_wait: 600", "wake_wait: 600, reload_drain_timeout: 5"))
    assert diff_stacks(stack(BASE), drain_only).empty


def test_a_cluster_change_is_blocked() -> None:
    node = "{name: head, address: 10.0.0.1, interface: eth0}"
    cluster = stack(BASE + f"cluster:\n  nodes:\n    - {node}\n")
    diff = diff_stacks(stack(BASE), cluster)
    assert diff.blocked is not None and "sparkstack down" in diff.blocked


def test_a_reload_starts_always_on_and_the_baseline_only() -> None:
    new = stack(
        """
models:
  big: {engine: llamacpp, model: a.gguf}
  lazy: {engine: llamacpp, model: b.gguf, policy: on_demand}
  base: {engine: llamacpp, model: c.gguf, policy: on_demand, default_when_idle: true}
  small: {engine: llamacpp, model: d.gguf}
"""
    )
    assert to_start(new, None, ["small", "lazy", "base", "big"]) == ["big", "small", "base"]
    assert to_start(new, None, ["lazy"]) == []


def runtime(name: str, inflight: int = 0, waiting: int = 0) -> ModelRuntime:
    spec = stack(BASE).models["keep"].model_copy(update={"name": name})
    rt = ModelRuntime(spec=spec, adapter=get_engine(spec.engine))
    rt.inflight, rt.waiting = inflight, waiting
    return rt


async def test_drain_waits_for_requests_in_flight() -> None:
    busy = runtime("busy", inflight=1)

    async def finish() -> None:
        await asyncio.sleep(0.2)
        busy.inflight = 0

    began = time.monotonic()
    finisher = asyncio.create_task(finish())
    assert await drain([busy, runtime("idle")], within=5) == []
    await finisher
    assert 0.15 < time.monotonic() - began < 2


async def test_drain_gives_up_after_its_bound_and_ignores_waiters() -> None:
    stuck, waiter = runtime("stuck", inflight=1), runtime("waiter", inflight=2, waiting=2)
    began = time.monotonic()
    assert await drain([stuck, waiter], within=0.2) == ["stuck"]
    assert time.monotonic() - began < 1


def test_the_result_says_what_happened() -> None:
    applied = ReloadResult(
        True, "SIGHUP", added=["fresh"], removed=["gone"], changed=["edit"],
        restarted=["edit"], kept_settings=["gateway.listen"], seconds=1.25,
    )  # fmt: skip
    text = applied.summary()
    assert text.startswith("reload applied in 1.2s")
    assert "added: fresh" in text and "removed: gone" in text and "started: edit" in text
    assert "kept the running gateway.listen" in text
    rejected = ReloadResult(False, "SIGHUP", reason="stack.yaml line 3: invalid YAML")
    assert rejected.as_json()["summary"] == (
        "reload rejected, the running stack is unchanged: stack.yaml line 3: invalid YAML"
    )


def test_default_when_idle_needs_on_demand_and_is_unique() -> None:
    with pytest.raises(StackError, match="needs policy: on_demand"):
        stack("models:\n  a: {engine: llamacpp, model: a.gguf, default_when_idle: true}\n")
    two = (
        "models:\n"
        "  a: {engine: llamacpp, model: a.gguf, policy: on_demand, default_when_idle: true}\n"
        "  b: {engine: llamacpp, model: b.gguf, policy: on_demand, default_when_idle: true}\n"
    )
    with pytest.raises(StackError, match="a, b all set default_when_idle"):
        stack(two)
    assert stack(two.replace("default_when_idle: true}\n  b", "}\n  b")).baseline == "b"
    assert stack(BASE).baseline is None
