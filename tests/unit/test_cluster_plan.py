"""Issue 14: the planner on a Ray cluster (point 3) and the bad input refused
before any model starts (point 5, the stack-file side)."""

from __future__ import annotations

from functools import partial

import pytest

from sparkstack.cluster.checks import check_interface
from sparkstack.cluster.ray_node import RayNodeOptions, head_argv, ray_env, worker_argv
from sparkstack.engines.vllm import VllmEngine
from sparkstack.errors import ClusterError, StackError
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import StackPlan, build_plan
from sparkstack.planner.render import render_plan
from sparkstack.settings import Settings
from sparkstack.stack import Stack, load_stack, load_stack_text
from tests.support import REPO

GIB = 2**30
SEED_RESIDENT_PER_NODE_GIB = 57.64
"""Seed 003: 'Weight resident per node: 57.64 GiB' (TP=2 over two Sparks)."""
TWO_SPARKS = """
machine: dgx-spark
host_reserve_gib: 20
cluster:
  nodes:
    - {name: spark-a, address: 192.168.100.1, interface: enp1s0f0np0, hca: rocep1s0f0}
    - {name: spark-b, address: 192.168.100.2, interface: enp1s0f0np0, hca: rocep1s0f0}
models:
  qwen3-235b:
    engine: vllm
    model: Qwen/Qwen3-235B-A22B-GPTQ-Int4
    context: 32768
    concurrency: 2
    enforce_eager: true
    tensor_parallel_size: %(tp)d
    nodes: [spark-a, spark-b]
"""


def plan_text(text: str) -> StackPlan:
    return build_plan(load_stack_text(text, "stack.yaml"),
                      inspect=partial(inspect_source, offline=True))  # fmt: skip


def test_qwen3_235b_fits_each_of_two_sparks_with_its_kv() -> None:
    plan = build_plan(
        load_stack(REPO / "examples/seed003-qwen3-235b-two-sparks.yaml"),
        inspect=partial(inspect_source, offline=True),
    )
    assert plan.fits, render_plan(plan)
    model = plan.model("qwen3-235b")
    assert model.nodes == ["spark-a", "spark-b"] and model.tensor_parallel_size == 2
    # half the weights per node: the seed's measured 57.64 GiB to the hundredth
    assert round(model.weights_bytes / 2 / GIB, 2) == SEED_RESIDENT_PER_NODE_GIB
    kv_per_node = model.kv_bytes // 2
    assert kv_per_node > 5 * GIB  # 2 x 32768 tokens, half on each node
    assert model.per_node_bytes == model.weights_bytes // 2 + kv_per_node + model.overhead_bytes
    for node in plan.nodes:
        assert node.fits and node.models == {"qwen3-235b": model.per_node_bytes}
        assert node.budget_bytes - node.peak_bytes > 30 * GIB
    text = render_plan(plan)
    assert "spark-a      192.168.100.1   budget 101.69 GiB, resident 65.41 GiB" in text
    assert "qwen3-235b: TP 2 x PP 1 over spark-a, spark-b, 65.41 GiB per node" in text
    assert "fits on every node" in text


def test_qwen3_235b_does_not_fit_one_spark_and_says_why() -> None:
    plan = build_plan(
        load_stack(REPO / "examples/seed003-qwen3-235b-one-spark.yaml"),
        inspect=partial(inspect_source, offline=True),
    )
    assert not plan.fits and not plan.nodes
    assert plan.model("qwen3-235b").weights_bytes > plan.machine.budget_bytes
    assert any("its weights alone (115.3 GiB) exceed the budget" in s and "two machines" in s
               for s in plan.suggestions)  # fmt: skip


def test_a_plan_that_fits_only_in_aggregate_is_refused_naming_the_node() -> None:
    text = (
        (TWO_SPARKS % {"tp": 2})
        + """
  brain:
    engine: vllm
    model: openai/gpt-oss-120b
    context: 8192
    enforce_eager: true
"""
    )
    plan = plan_text(text)
    head, worker = plan.nodes
    assert head.name == "spark-a" and set(head.models) == {"qwen3-235b", "brain"}
    assert worker.fits and not head.fits
    assert head.resident_bytes + worker.resident_bytes < head.budget_bytes + worker.budget_bytes
    assert not plan.fits and plan.overflow_bytes == head.overflow_bytes
    assert plan.suggestions[0].startswith(
        f"node spark-a overflows by {head.overflow_bytes / GIB:.1f} GiB"
    )
    rendered = render_plan(plan)
    assert "DOES NOT FIT: node spark-a by" in rendered and "in aggregate does not count" in rendered


def stack_error(text: str) -> str:
    with pytest.raises(StackError) as info:
        load_stack_text(text, "stack.yaml")
    return str(info.value)


def test_tp_larger_than_the_gpus_in_the_cluster_is_a_stack_error() -> None:
    message = stack_error(TWO_SPARKS % {"tp": 4})
    assert (
        "models.qwen3-235b: tensor_parallel_size 4 x pipeline_parallel_size 1 = 4 GPUs" in message
    )
    assert "have 2 and the cluster 2; lower the sizes or add nodes" in message


def test_nodes_must_name_cluster_nodes() -> None:
    message = stack_error(
        (TWO_SPARKS % {"tp": 2}).replace("[spark-a, spark-b]", "[spark-a, spark-c]")
    )
    assert (
        "models.qwen3-235b.nodes: 'spark-c' is not a cluster node; use one of: spark-a, spark-b"
        in message
    )


def test_wrong_interface_name_is_a_clear_error() -> None:
    with pytest.raises(ClusterError) as info:
        check_interface("enp9s9f9", "cluster.nodes.spark-a.interface")
    assert "network interface 'enp9s9f9' does not exist on this host (it has: " in str(info.value)
    assert "lo" in str(info.value)


def test_ray_nodes_get_the_fast_link_and_memory_monitor_environment(tmp_path: object) -> None:
    options = RayNodeOptions(address="10.77.0.2", interface="veth-b", hca="mlx5_0", num_cpus=1)
    env = ray_env(options)
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "veth-b"
    assert env["NCCL_IB_HCA"] == "mlx5_0"
    assert env["RAY_memory_monitor_refresh_ms"] == "0"
    assert env["RAY_memory_usage_threshold"] == "0.98"
    assert "NCCL_IB_HCA" not in ray_env(RayNodeOptions(address="10.77.0.2", interface="veth-b"))
    settings = Settings.from_env()
    head = head_argv(settings, options, 6379)
    assert head[0].endswith("engines/vllm/bin/ray") and head[1:3] == ["start", "--head"]
    assert "--block" in head and head[head.index("--num-cpus") + 1] == "1"
    worker = worker_argv(settings, options, "10.77.0.1:6379")
    assert worker[1:4] == ["start", "--address", "10.77.0.1:6379"]
    assert worker[worker.index("--node-ip-address") + 1] == "10.77.0.2"


def test_vllm_spanning_nodes_runs_on_ray_with_per_rank_memory_flags() -> None:
    stack: Stack = load_stack(REPO / "examples/seed003-qwen3-235b-two-sparks.yaml")
    plan = build_plan(stack, inspect=partial(inspect_source, offline=True))
    spec = stack.models["qwen3-235b"].model_copy(update={"command": ["vllm-stand-in"]})
    model = plan.model("qwen3-235b")
    argv = VllmEngine().launch(spec, 8000, Settings.from_env(), model.estimate()).argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    assert int(argv[argv.index("--kv-cache-memory-bytes") + 1]) == model.kv_bytes // 2
    per_rank = float(argv[argv.index("--gpu-memory-utilization") + 1])
    assert 0.5 < per_rank < 0.6  # 65.4 GiB of a 121.7 GiB Spark, not 1.06
    single = stack.models["qwen3-235b"].model_copy(
        update={"command": ["x"], "tensor_parallel_size": 1, "nodes": []}
    )
    assert "--distributed-executor-backend" not in VllmEngine().launch(
        single, 8000, Settings.from_env(), None).argv  # fmt: skip


def test_plan_prints_the_per_rank_flags_the_launch_passes() -> None:
    """`plan` (text and JSON) shows the flags each rank of the TP=2 model gets, the
    same ones the launch puts in vLLM's argv (one function divides them)."""
    stack: Stack = load_stack(REPO / "examples/seed003-qwen3-235b-two-sparks.yaml")
    plan = build_plan(stack, inspect=partial(inspect_source, offline=True))
    model = plan.model("qwen3-235b")
    spec = stack.models["qwen3-235b"].model_copy(update={"command": ["vllm-stand-in"]})
    argv = VllmEngine().launch(spec, 8000, Settings.from_env(), model.estimate()).argv
    line = next(x for x in render_plan(plan).splitlines() if x.startswith("qwen3-235b flags"))
    label, _, printed = line.partition(": ")
    assert label == "qwen3-235b flags (each of its 2 ranks)"
    flags = printed.split()
    start = argv.index(flags[0])
    assert argv[start : start + len(flags)] == flags, (flags, argv)
    assert flags[flags.index("--kv-cache-memory-bytes") + 1] == str(model.kv_bytes // 2)
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    dumped = StackPlan.model_validate_json(plan.model_dump_json()).model("qwen3-235b")
    assert dumped.launch_args == flags
    assert dumped.engine_args != flags  # the whole model's, which no rank is given
    assert not any("1.06" in warning for warning in model.warnings), model.warnings
