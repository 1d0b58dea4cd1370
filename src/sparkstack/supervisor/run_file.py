"""The run file of a running `sparkstack up`: its pid, its gateway and the
engine process groups, so `status` and `down` can find them from another shell."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sparkstack.errors import SupervisorError


@dataclass
class RunFile:
    pid: int
    gateway_url: str
    engines: dict[str, int] = field(default_factory=dict)
    """Engine process-group ids by model name."""

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
                pid=int(data["pid"]),
                gateway_url=str(data["gateway_url"]),
                engines={str(k): int(v) for k, v in data.get("engines", {}).items()},
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
