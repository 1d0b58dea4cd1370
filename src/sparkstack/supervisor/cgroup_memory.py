"""The memory a container's cgroup charges, read from the kernel (the figure
`podman stats` and `docker stats` show): cgroup v2 ``memory.current``, or v1's
``memory.usage_in_bytes`` (hybrid hosts, as these machines). Roots are
parameters so tests can feed a fake /proc and /sys."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
CGROUP_FS = Path("/sys/fs/cgroup")


def cgroup_bytes(pid: int, proc: Path = PROC, cgroup_fs: Path = CGROUP_FS) -> int | None:
    """Bytes charged to the memory cgroup of ``pid``, or None when it cannot be read."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2 (unified hierarchy)
            candidates += [
                cgroup_fs / relative / "memory.current",
                cgroup_fs / "unified" / relative / "memory.current",
            ]
        elif "memory" in controllers.split(","):
            candidates.append(cgroup_fs / "memory" / relative / "memory.usage_in_bytes")
    for candidate in candidates:
        try:
            return int(candidate.read_text().strip())
        except (OSError, ValueError):
            continue
    return None
