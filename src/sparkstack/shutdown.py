"""`sparkstack down`: ask the running `up` to stop, wait, and make sure no engine
process group or Ray head it started is left (SIGKILL for any that are). A pid is signalled
only when its start time and executable still match the run file: after a crash
the pid may belong to an unrelated process, which is left alone."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from sparkstack.containers.cleanup import remove_stack_containers
from sparkstack.containers.launch import record_file, stack_id
from sparkstack.settings import Settings
from sparkstack.supervisor.run_file import RunFile, kill_left_behind


@dataclass
class DownReport:
    found: bool
    up_stopped: bool = False
    stale_up: bool = False
    """The recorded `up` pid is gone or now another process: it was not signalled."""
    killed_groups: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)


def bring_down(settings: Settings, timeout: float = 60.0) -> DownReport:
    run = RunFile.read(settings.run_file)
    if run is None:
        removed = remove_stack_containers(record_file(settings), stack_id(settings))
        return DownReport(found=bool(removed), removed_containers=removed)
    report = DownReport(found=True)
    up = run.up.process()
    if up is None:
        report.stale_up = True
    else:
        os.kill(up.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while run.up.process() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        report.up_stopped = run.up.process() is None
        if not report.up_stopped:
            os.kill(up.pid, signal.SIGKILL)
    report.killed_groups = kill_left_behind(run)
    report.removed_containers = remove_stack_containers(record_file(settings), stack_id(settings))
    RunFile.remove(settings.run_file)
    return report
