"""The systemd unit that runs ``sparkstack up STACK`` as a service: restarted on
failure, started in the folder that holds the stack's ``.env`` (``up`` reads it
from there, so secrets stay out of the unit and out of argv), and stopped with
``sparkstack down``, which ends every engine; ``KillMode=mixed`` then lets
systemd kill whatever is left in the service's cgroup after the grace time."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from sparkstack.stack.schema import Stack

_MARGIN_S = 30


@dataclass(frozen=True)
class UnitOptions:
    stack_file: Path
    sparkstack: Path
    """Absolute path of the sparkstack executable (systemd needs absolute paths)."""
    user: str | None = None
    description: str = ""


def stop_grace_s(stack: Stack) -> int:
    """Seconds `down` may take: the slowest engine's stop timeout plus a margin."""
    slowest = max((m.stop_timeout for m in stack.models.values()), default=10.0)
    return math.ceil(slowest) + _MARGIN_S


def systemd_unit(stack: Stack, options: UnitOptions) -> str:
    """The unit file text for ``stack``."""
    stack_file = options.stack_file.resolve()
    workdir = stack_file.parent
    exe = shlex.quote(str(options.sparkstack))
    grace = stop_grace_s(stack)
    user = f"User={options.user}\n" if options.user else ""
    description = options.description or f"sparkstack {stack_file.stem}"
    return f"""\
# systemd unit for the sparkstack stack {stack_file.name}, written by `sparkstack export systemd`.
# Install:  sudo cp THIS /etc/systemd/system/sparkstack-{stack_file.stem}.service
#           sudo systemctl daemon-reload
#           sudo systemctl enable --now sparkstack-{stack_file.stem}
# Logs:     journalctl -u sparkstack-{stack_file.stem} -f

[Unit]
Description={description}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
{user}# The folder of the stack file: `up` reads its .env (chmod 600) from here.
WorkingDirectory={workdir}
ExecStart={exe} up {shlex.quote(str(stack_file))}
# `down` stops the gateway, then every engine's process group (SIGTERM, then SIGKILL).
ExecStop={exe} down --timeout {grace}
# SIGTERM to `up` only, then SIGKILL to anything left in the cgroup after the grace time.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStartSec=infinity
TimeoutStopSec={grace + _MARGIN_S}
Restart=on-failure
RestartSec=10
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""
