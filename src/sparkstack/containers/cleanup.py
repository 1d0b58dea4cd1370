"""`sparkstack down`'s sweep: every container labelled with the stack's id is
removed (``rm -f``), with the CLIs the stack recorded, else those on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sparkstack.containers.config import STACK_LABEL
from sparkstack.containers.record import CliRecord, read_records

_TIMEOUT = 60.0


def _run(record: CliRecord, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [record.cli, *record.cli_args, *args],
            env={**os.environ, **record.cli_env},
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def stack_containers(record: CliRecord, stack_id: str) -> list[str]:
    """Names of the containers (running or not) labelled with ``stack_id``."""
    result = _run(record, "ps", "-a", "--filter", f"label={STACK_LABEL}={stack_id}",
                  "--format", "{{.Names}}")  # fmt: skip
    if result is None or result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def remove_stack_containers(record_file: Path, stack_id: str) -> list[str]:
    """Remove the stack's containers; returns their names. Nothing to do (and no CLI
    is run) when the stack never created a container."""
    if not record_file.exists():
        return []
    records = read_records(record_file)
    if not records:
        records = [CliRecord(cli) for cli in ("docker", "podman") if shutil.which(cli)]
    removed: list[str] = []
    for record in records:
        names = stack_containers(record, stack_id)
        if names:
            result = _run(record, "rm", "-f", *names)
            if result is not None and result.returncode == 0:
                removed += names
    if all(not stack_containers(record, stack_id) for record in records):
        record_file.unlink(missing_ok=True)
    return removed
