"""Issue 14, point 5 through `sparkstack up`: a wrong interface name and a TP size
larger than the cluster's GPUs stop `up` with a clear error before Ray or any
model starts (the unreachable address needs two hosts: tests/e2e/test_cluster_netns.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO, SMOL_GGUF

STACK = """
machine: {total_gib: 16, unified: true, device: cpu}
host_reserve_gib: 1
cluster:
  nodes:
    - {name: head, address: 127.0.0.1, interface: %(interface)s}
    - {name: worker, address: 127.0.0.2, interface: lo}
models:
  smol:
    engine: llamacpp
    model: %(model)s
    context: 512
    tensor_parallel_size: %(tp)d
    nodes: [head, worker]
"""


def up(tmp_path: Path, interface: str, tp: int) -> subprocess.CompletedProcess[str]:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK % {"interface": interface, "tp": tp, "model": SMOL_GGUF})
    env = {"SPARKSTACK_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "sparkstack", "up", str(stack), "--listen",
                           "127.0.0.1:18915"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO)  # fmt: skip


def test_wrong_interface_name_stops_up_before_ray_starts(tmp_path: Path) -> None:
    done = up(tmp_path, "enp9s9f9", 2)
    assert done.returncode == 1
    assert "error: cluster.nodes.head.interface: network interface 'enp9s9f9' does not exist " \
        "on this host (it has: " in done.stderr  # fmt: skip
    assert not (tmp_path / "state" / "logs" / "ray-head.log").exists()
    assert not (tmp_path / "state" / "logs" / "smol.log").exists()


def test_tp_larger_than_the_clusters_gpus_stops_up(tmp_path: Path) -> None:
    done = up(tmp_path, "lo", 4)
    assert done.returncode == 1
    assert "models.smol: tensor_parallel_size 4 x pipeline_parallel_size 1 = 4 GPUs, but its " \
        "nodes (head, worker) have 2 and the cluster 2; lower the sizes or add nodes" \
        in done.stderr  # fmt: skip
