"""`sparkstack down`: ask the running `up` to stop, wait, and make sure no engine
process group it started is left (SIGKILL for any that are)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from sparkstack.containers.cleanup import remove_stack_containers
from sparkstack.containers.launch import record_file, stack_id
from sparkstack.settings import Settings
from sparkstack.supervisor.process import group_alive, kill_group, pid_alive
from sparkstack.supervisor.run_file import RunFile


@dataclass
class DownReport:
    found: bool
    up_stopped: bool = False
    killed_groups: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)


def bring_down(settings: Settings, timeout: float = 60.0) -> DownReport:
    run = RunFile.read(settings.run_file)
    if run is None:
        removed = remove_stack_containers(record_file(settings), stack_id(settings))
        return DownReport(found=bool(removed), removed_containers=removed)
    report = DownReport(found=True)
    if pid_alive(run.pid):
        os.kill(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(run.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        report.up_stopped = not pid_alive(run.pid)
        if not report.up_stopped:
            os.kill(run.pid, signal.SIGKILL)
    for name, pgid in run.engines.items():
        if group_alive(pgid) and kill_group(pgid, signal.SIGKILL):
            report.killed_groups.append(name)
    report.removed_containers = remove_stack_containers(record_file(settings), stack_id(settings))
    RunFile.remove(settings.run_file)
    return report
