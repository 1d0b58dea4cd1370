"""Secrets from a ``.env`` file (KEY=VALUE lines) into the environment, never
from argv: variables already set win, so the real environment overrides."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("sparkstack")


def load_env_file(path: Path) -> list[str]:
    """Set the variables of ``path`` that are not set yet; returns their names."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
    loaded = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name and name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded
