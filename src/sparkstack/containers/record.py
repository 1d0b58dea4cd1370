"""Which containers a stack created, and with which CLI settings, kept in the state
folder so `sparkstack down` can remove them after a SIGKILLed `up`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sparkstack.containers.config import ContainerConfig


@dataclass
class CliRecord:
    """A container CLI and the global flags / environment it was run with."""

    cli: str
    cli_args: list[str] = field(default_factory=list)
    cli_env: dict[str, str] = field(default_factory=dict)


def record_container(path: Path, config: ContainerConfig) -> None:
    records = read_records(path)
    entry = CliRecord(config.cli, list(config.cli_args), dict(config.cli_env))
    if entry not in records:
        records.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records], indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_records(path: Path) -> list[CliRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [CliRecord(str(d["cli"]), list(d["cli_args"]), dict(d["cli_env"])) for d in data]
    except (OSError, ValueError, KeyError, TypeError):
        return []
