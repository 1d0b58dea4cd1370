"""Issue 14, gap 1: the cluster's nodes in the status document, as the node
sampler's lines make them (parse_line, node_rows), and as `top` and `sparkstack
status` draw them: name, address, alive/lost, memory, GPUs, models placed."""

from __future__ import annotations

import json

from rich.console import Console

from sparkstack.cluster.node_monitor import node_rows, parse_line, placements
from sparkstack.stack import load_stack_text
from sparkstack.telemetry.document import NodeStatus
from sparkstack.telemetry.nodes_view import node_lines
from sparkstack.telemetry.top_view import View, render
from tests.unit.test_telemetry import _document

GIB = 2**30
STACK = """
machine: {total_gib: 16, unified: true, device: cpu}
cluster:
  nodes:
    - {name: head, address: 10.0.0.1, interface: eth0}
    - {name: worker, address: 10.0.0.2, interface: eth0}
    - {name: spare, address: 10.0.0.3, interface: eth0}
models:
  small:
    engine: external
    url: http://127.0.0.1:9
  big:
    engine: external
    url: http://127.0.0.1:9
    tensor_parallel_size: 2
    nodes: [head, worker]
"""


def driver_line() -> str:
    rows = [
        {"address": "10.0.0.2", "alive": False, "resources": {"GPU": 1.0}, "memory": None},
        {"address": "10.0.0.1", "alive": True, "memory": [128 * GIB, 60 * GIB],
         "resources": {"CPU": 20.0, "GPU": 1.0, "memory": 80.0 * GIB}},
        {"address": "10.0.0.2", "alive": True, "memory": [128 * GIB, 70 * GIB],
         "resources": {"CPU": 20.0, "GPU": 1.0}},
    ]  # fmt: skip
    return "SPARKSTACK-NODES " + json.dumps(rows)


def nodes(lost: dict[str, str] | None = None) -> list[NodeStatus]:
    stack = load_stack_text(STACK, "stack.yaml")
    assert stack.cluster is not None
    samples = parse_line(driver_line())
    return node_rows(stack.cluster, placements(stack), samples, 100.0, lost or {})


def test_the_sampler_line_becomes_one_row_per_configured_node() -> None:
    assert parse_line("2026-11-23 INFO worker.py: connected") is None
    head, worker, spare = nodes()
    assert (head.name, head.state, head.head, head.models) == ("head", "alive", True,
                                                               ["small", "big"])  # fmt: skip
    assert head.memory_total_bytes == 128 * GIB and head.memory_available_bytes == 60 * GIB
    assert head.gpus == 1.0 and head.ray_memory_bytes == 80 * GIB
    # Ray's table keeps the dead entry of a node that joined again: the live one wins
    assert worker.state == "alive" and worker.memory_available_bytes == 70 * GIB
    assert worker.models == ["big"]
    assert (spare.state, spare.models, spare.memory_total_bytes) == ("absent", [], None)
    lost = nodes({"worker": "lost (10.0.0.2:6380 Connection refused)"})[1]
    assert lost.state == "lost" and lost.memory_total_bytes is None
    assert lost.detail == "lost (10.0.0.2:6380 Connection refused)"


def test_top_draws_the_nodes_table_only_for_a_cluster() -> None:
    view = View(url="http://spark:8080")
    console = Console(width=140, record=True, color_system=None)
    console.print(render(_document(), view, 138))
    assert "cluster nodes" not in console.export_text()
    doc = _document().model_copy(update={"nodes": nodes({"worker": "lost (refused)"})})
    console = Console(width=140, record=True, color_system=None)
    console.print(render(doc, view, 138))
    text = console.export_text()
    assert "cluster nodes" in text
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("head (head)"))
    assert head.split()[2:] == ["10.0.0.1", "alive", "1", "60.00/128.00", "GiB", "small,", "big"]
    worker = next(line for line in lines if line.startswith("worker "))
    assert worker.split()[1:4] == ["10.0.0.2", "lost", "lost"] and "big" in worker
    spare = next(line for line in lines if line.startswith("spare "))
    assert "absent" in spare


def test_status_prints_a_line_per_node() -> None:
    lines = node_lines(nodes())
    assert lines[0].split() == ["NODE", "ADDRESS", "STATE", "GPU", "MEMORY", "MODELS"]
    assert lines[1].split() == ["head", "10.0.0.1", "alive", "1", "60.00/128.00", "GiB",
                                "small,", "big"]  # fmt: skip
    assert lines[2].split() == ["worker", "10.0.0.2", "alive", "1", "70.00/128.00", "GiB", "big"]
    assert lines[3].split()[:4] == ["spare", "10.0.0.3", "absent", "-"]
