"""`sparkstack doctor`: the host checks that explain what is wrong and the fix.

Each check returns one ``CheckResult`` (ok, warn, fail or skip); any fail makes
the exit code 1. The checks themselves live in ``doctor_checks``; this module
holds the records, what they read from the host (``HostProbe``: every path and
probe injectable, so tests feed failing cases) and the text/JSON rendering.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class CheckResult(BaseModel):
    name: str
    status: Status
    message: str
    fix: str = ""


class DoctorReport(BaseModel):
    ok: bool
    checks: list[CheckResult]


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class HostProbe:
    """Where doctor reads the host from; tests replace any of these."""

    meminfo: Path = Path("/proc/meminfo")
    overcommit_memory: Path = Path("/proc/sys/vm/overcommit_memory")
    swaps: Path = Path("/proc/swaps")
    nginx_sites: tuple[Path, ...] = (Path("/etc/nginx/sites-enabled"), Path("/etc/nginx/conf.d"))
    cdi_dirs: tuple[Path, ...] = (Path("/etc/cdi"), Path("/var/run/cdi"))
    env_dirs: tuple[Path, ...] = ()
    """Folders whose ``.env`` `up` reads (the working directory, the stack's folder)."""
    search_path: str | None = None
    """PATH for finding the container CLI (None: the process's PATH)."""
    port_free: Callable[[str, int], bool] = port_free
    disk_free: Callable[[Path], int] = disk_free

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.search_path)

    def meminfo_bytes(self) -> dict[str, int]:
        """/proc/meminfo as bytes per field (its kB are KiB)."""
        values: dict[str, int] = {}
        for line in self.meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
                values[name.strip()] = int(parts[0]) * scale
        return values

    def swap_bytes(self) -> int:
        """Total active swap (``/proc/swaps`` sizes are KiB)."""
        total = 0
        for line in self.swaps.read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                total += int(parts[2]) * 1024
        return total


_MARK = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def render_report(report: DoctorReport) -> str:
    lines = []
    for check in report.checks:
        lines.append(f"{_MARK[check.status]}  {check.name:<16} {check.message}")
        if check.fix and check.status in (Status.WARN, Status.FAIL):
            lines.append(f"{'':6}{'':<16} fix: {check.fix}")
    failed = sum(1 for c in report.checks if c.status is Status.FAIL)
    warned = sum(1 for c in report.checks if c.status is Status.WARN)
    lines.append(f"{failed} failed, {warned} warnings" if failed or warned else "all checks passed")
    return "\n".join(lines)
