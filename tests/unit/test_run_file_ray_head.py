"""The run file's Ray head record (issue 14, gap 2): it survives the JSON round
trip, and killing it ends the head's process group and every later process that
names its session folder, while a process naming a longer folder of the same
prefix (another `up`'s) is left alone. Real processes (sleep), no Ray."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkstack.serve import claim_run_file
from sparkstack.settings import Settings
from sparkstack.supervisor.run_file import ProcessIdentity, RayHeadRecord, RunFile

SLEEPER = "import sys, time; time.sleep(60)"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_ray_head_record_round_trips_and_kills_only_its_head(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    temp_dir = tmp_path / "ssray-42"
    temp_dir.mkdir()
    # the leader with a child in its group (like `ray start --block` and its raylet)
    leader = subprocess.Popen(["sh", "-c", f"python3 -c '{SLEEPER}' & wait"],
                              start_new_session=True)  # fmt: skip
    procs.append(leader)
    time.sleep(0.5)
    # a process that left the group but names the session folder
    stray = subprocess.Popen(["python3", "-c", SLEEPER, f"--temp-dir={temp_dir}"],
                             start_new_session=True)  # fmt: skip
    # another stack's head: its folder shares the prefix
    other = subprocess.Popen(["python3", "-c", SLEEPER, f"--temp-dir={temp_dir}3/session"],
                             start_new_session=True)  # fmt: skip
    procs += [stray, other]
    time.sleep(0.5)
    identity = ProcessIdentity.of(leader.pid)
    assert identity is not None
    run = RunFile(up=identity, gateway_url="http://127.0.0.1:1",
                  ray_head=RayHeadRecord(identity, str(temp_dir)))  # fmt: skip
    run.write(tmp_path / "run.json")
    read = RunFile.read(tmp_path / "run.json")
    assert read is not None and read.ray_head == run.ray_head
    record = read.ray_head
    assert record is not None
    found = {proc.pid for proc in record.processes()}
    assert {leader.pid, stray.pid} <= found and other.pid not in found
    assert len(found) == 3, found  # the leader's child too
    assert record.kill()
    leader.wait(timeout=5), stray.wait(timeout=5)  # (kill() may have reaped them itself)
    assert other.poll() is None
    assert not temp_dir.exists()
    assert not record.processes() and not record.kill()
    assert os.path.exists(f"/proc/{other.pid}")


def test_a_run_file_without_a_ray_head_reads_as_none(tmp_path: Path) -> None:
    me = ProcessIdentity.of(os.getpid())
    assert me is not None
    RunFile(up=me, gateway_url="http://127.0.0.1:1").write(tmp_path / "run.json")
    read = RunFile.read(tmp_path / "run.json")
    assert read is not None and read.ray_head is None


def test_the_next_up_kills_the_ray_head_a_dead_up_left(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """claim_run_file (the start of `up`) after a SIGKILLed `up`: its Ray head goes."""
    dead = subprocess.Popen(["sleep", "30"])  # read while it lives, then gone
    dead_identity = ProcessIdentity.of(dead.pid)
    dead.kill()
    dead.wait(timeout=10)
    temp_dir = tmp_path / "ssray-7"
    temp_dir.mkdir()
    leader = subprocess.Popen(["python3", "-c", SLEEPER], start_new_session=True)
    procs.append(leader)
    time.sleep(0.3)
    identity = ProcessIdentity.of(leader.pid)
    assert identity is not None and dead_identity is not None
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state")
    RunFile(up=dead_identity, gateway_url="http://127.0.0.1:1",
            ray_head=RayHeadRecord(identity, str(temp_dir))).write(settings.run_file)  # fmt: skip
    claim_run_file(settings)
    leader.wait(timeout=5)
    assert not settings.run_file.exists() and not temp_dir.exists()
