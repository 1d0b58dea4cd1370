"""A container's memory from its cgroup (issue 10: cgroup figures in footprints.csv),
read from fake /proc and /sys trees in the v1 (hybrid) and v2 layouts, and from
this very process on the real kernel."""

from __future__ import annotations

import os
from pathlib import Path

from sparkstack.supervisor.cgroup_memory import cgroup_bytes


def fake_proc(tmp_path: Path, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text(cgroup)
    return proc


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "12:cpu,cpuacct:/libpod_parent/x\n7:memory:/libpod_parent/x\n")
    usage = tmp_path / "sys" / "memory" / "libpod_parent" / "x" / "memory.usage_in_bytes"
    usage.parent.mkdir(parents=True)
    usage.write_text("123456789\n")
    assert cgroup_bytes(42, proc, tmp_path / "sys") == 123456789


def test_cgroup_v2_unified(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "0::/machine.slice/libpod-abc.scope\n")
    current = tmp_path / "sys" / "machine.slice" / "libpod-abc.scope" / "memory.current"
    current.parent.mkdir(parents=True)
    current.write_text("2048\n")
    assert cgroup_bytes(42, proc, tmp_path / "sys") == 2048


def test_unreadable_is_none(tmp_path: Path) -> None:
    assert cgroup_bytes(42, tmp_path / "proc", tmp_path / "sys") is None
    proc = fake_proc(tmp_path, "0::/gone\n")
    assert cgroup_bytes(42, proc, tmp_path / "sys") is None


def test_this_process_on_the_real_kernel() -> None:
    found = cgroup_bytes(os.getpid())
    assert found is None or found > 0
