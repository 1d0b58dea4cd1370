"""The run file of a running `sparkstack up`: who `up` is, its gateway, the
engine process groups and the Ray head it started (a stack with ``cluster:``), so
`status` and `down` can find them from another shell.

Every process is recorded with its start time and executable, not only its pid:
after a crash a pid may be reused by an unrelated process, which `down` and `up`
must never signal. (The executable rather than the full argv: engines rename
their own process titles, vLLM's to ``VLLM::APIServer``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from sparkstack.errors import SupervisorError

_START_TOLERANCE = 0.05
"""Seconds: create times are read from /proc at clock-tick resolution."""


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    started: float
    """psutil create_time (seconds since the epoch)."""
    exe: str
    cmdline: list[str] = field(default_factory=list)
    """For the reader; not compared."""

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of a live process, or None if it is gone."""
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                return cls(pid, proc.create_time(), _exe(proc), proc.cmdline())
        except psutil.Error:
            return None

    def process(self) -> psutil.Process | None:
        """The live process this identity names, or None when the pid is gone or now
        belongs to another process (a different start time or executable)."""
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                same = abs(proc.create_time() - self.started) <= _START_TOLERANCE
                same = same and _exe(proc) == self.exe
                alive = proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return None
        return proc if same and alive else None

    def group(self) -> list[psutil.Process]:
        """Live members of the process group this process leads (engines run in their
        own session). Without the leader, members born after it still count: a pgid
        cannot be handed to a new group while any member lives."""
        leader = self.process()
        members: list[psutil.Process] = []
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if os.getpgid(proc.pid) != self.pid or proc.info["status"] == "zombie":
                    continue
            except (ProcessLookupError, psutil.Error):
                continue
            if proc.pid == self.pid:
                if leader is not None:
                    members.append(proc)
            elif proc.info["create_time"] + _START_TOLERANCE >= self.started:
                members.append(proc)
        return members


def kill_leftovers(engines: dict[str, ProcessIdentity]) -> list[str]:
    """SIGKILL every live member of the recorded engine groups; their model names."""
    killed = []
    for name, identity in engines.items():
        members = identity.group()
        for proc in members:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        if members:
            killed.append(name)
    return killed


@dataclass(frozen=True)
class RayHeadRecord:
    """The Ray head `up` started (issue 14): ``ray start --head --block`` leads the
    process group of Ray's GCS server and raylet, whose command lines name Ray's
    session folder ``temp_dir`` (sparkstack's own, one per `up`); the raylet's
    workers are its children. A SIGKILLed `up` leaves that head running; this
    finds it."""

    leader: ProcessIdentity
    temp_dir: str

    def processes(self) -> list[psutil.Process]:
        """Live processes of this head: its group, their descendants (Ray starts its
        workers in sessions of their own, titled ``ray::IDLE``), and any process
        started after it whose command line names its session folder."""
        found = {proc.pid: proc for proc in self.leader.group()}
        for member in list(found.values()):
            with contextlib.suppress(psutil.Error):
                found.update((child.pid, child) for child in member.children(recursive=True))
        marker = self.temp_dir.rstrip("/") + "/"
        for proc in psutil.process_iter(["pid", "create_time", "cmdline", "status"]):
            if proc.pid in found or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            born = proc.info["create_time"] or 0.0
            if born + _START_TOLERANCE < self.leader.started:
                continue
            if any(marker in arg + "/" for arg in proc.info["cmdline"] or []):
                found[proc.pid] = proc
        return list(found.values())

    def kill(self) -> bool:
        """SIGKILL every process of this head and remove its session folder; whether
        any process was left."""
        members = self.processes()
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(members, timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return bool(members)


def kill_left_behind(run: RunFile) -> list[str]:
    """What a dead `up` left: its engine groups and its Ray head, killed; their names."""
    killed = kill_leftovers(run.engines)
    if run.ray_head is not None and run.ray_head.kill():
        killed.append("the Ray head")
    return killed


def _exe(proc: psutil.Process) -> str:
    try:
        return proc.exe()
    except psutil.AccessDenied:
        return ""


@dataclass
class RunFile:
    up: ProcessIdentity
    gateway_url: str
    engines: dict[str, ProcessIdentity] = field(default_factory=dict)
    """Engine process-group leaders by model name."""
    ray_head: RayHeadRecord | None = None

    @property
    def pid(self) -> int:
        return self.up.pid

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> RunFile | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                up=_identity(data["up"]),
                gateway_url=str(data["gateway_url"]),
                engines={str(k): _identity(v) for k, v in data.get("engines", {}).items()},
                ray_head=_ray_head(data.get("ray_head")),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SupervisorError(
                f"{path} is damaged ({exc}); remove it if no `sparkstack up` is running"
            ) from exc

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _identity(data: dict[str, object]) -> ProcessIdentity:
    cmdline = data.get("cmdline", [])
    return ProcessIdentity(
        pid=int(str(data["pid"])),
        started=float(str(data["started"])),
        exe=str(data["exe"]),
        cmdline=[str(arg) for arg in cmdline] if isinstance(cmdline, list) else [],
    )


def _ray_head(data: object) -> RayHeadRecord | None:
    if not isinstance(data, dict):
        return None
    return RayHeadRecord(leader=_identity(data["leader"]), temp_dir=str(data["temp_dir"]))
