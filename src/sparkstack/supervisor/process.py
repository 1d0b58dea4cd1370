"""One child process in its own session (so its whole tree is one process group),
its output appended to a log file, and a stop that always ends the group:
SIGTERM, a bounded wait, SIGKILL, reap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import IO

import psutil

from sparkstack.errors import SupervisorError


def describe_exit(returncode: int | None) -> str:
    """Human words for a return code; negative codes are signals."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab", buffering=0)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent's reap counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_alive(pgid: int) -> bool:
    """True while any live process is in process group ``pgid``."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and pid_alive(proc.pid):
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int | None) -> int | None:
    """Resident memory of a process and all its descendants; None when it is gone.
    The one place the engines' measured memory is summed (status, telemetry,
    footprints)."""
    procs = process_tree(pid) if pid is not None else []
    if not procs:
        return None
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


class ManagedProcess:
    """A started child; ``pid`` is also its process-group id."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        try:
            log = _open_log(self.log_path)
        except OSError as exc:
            raise SupervisorError(
                f"{self.name}: cannot open the log file {self.log_path}: {exc.strerror}; "
                "check SPARKSTACK_STATE_DIR"
            ) from exc
        log.write(f"\n=== sparkstack starts {self.name}: {' '.join(self.argv)}\n".encode())
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise SupervisorError(
                f"{self.name}: cannot start {self.argv[0]!r}: {exc.strerror}; check the "
                "engine's command: in the stack file"
            ) from exc
        finally:
            log.close()

    async def wait(self) -> int:
        if self._proc is None:
            raise SupervisorError(f"{self.name}: wait() before start()")
        return await self._proc.wait()

    def kill(self) -> None:
        """SIGKILL the whole group now (a hung or stopped engine handles no SIGTERM)."""
        if self._proc is not None and self._proc.returncode is None:
            kill_group(self._proc.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> str:
        """Stop the whole group; returns how it ended, e.g. 'killed by SIGKILL after 10s'."""
        proc = self._proc
        if proc is None:
            return "never started"
        if proc.returncode is None:
            kill_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                return f"{describe_exit(proc.returncode)} after ignoring SIGTERM for {grace:g}s"
        # Leader gone: a child that ignored SIGTERM must not outlive it.
        with contextlib.suppress(OSError):
            kill_group(proc.pid, signal.SIGKILL)
        return describe_exit(proc.returncode)
