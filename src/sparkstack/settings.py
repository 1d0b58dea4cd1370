"""Process-wide settings, read once from ``SPARKSTACK_*`` environment variables.

Only paths and defaults that do not belong in a stack file live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _default_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparkstack"


def _default_config_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "sparkstack"


def _default_state_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "sparkstack"


@dataclass(frozen=True)
class Settings:
    """Typed settings; every field has a default and an environment variable."""

    home: Path
    """SPARKSTACK_HOME: engine venvs and cached wheels (default ~/.cache/sparkstack)."""
    state_dir: Path
    """SPARKSTACK_STATE_DIR: the run file of `up` and the per-model logs."""
    config_dir: Path = Path()
    """SPARKSTACK_CONFIG_DIR: the API keys file (default ~/.config/sparkstack)."""

    @property
    def keys_file(self) -> Path:
        return self.config_dir / "keys.json"

    @property
    def engines_dir(self) -> Path:
        return self.home / "engines"

    @property
    def run_file(self) -> Path:
        return self.state_dir / "run.json"

    @property
    def footprints_file(self) -> Path:
        return self.state_dir / "footprints.csv"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def gateway_log_file(self) -> Path:
        """The gateway's access log, one JSON object per request."""
        return self.log_dir / "gateway.jsonl"

    @property
    def load_times_file(self) -> Path:
        """Past start durations per model (the expected load time in /v1/models)."""
        return self.state_dir / "load_times.json"

    @classmethod
    def from_env(cls) -> Settings:
        home = os.environ.get("SPARKSTACK_HOME")
        state = os.environ.get("SPARKSTACK_STATE_DIR")
        config = os.environ.get("SPARKSTACK_CONFIG_DIR")
        return cls(
            home=Path(home) if home else _default_home(),
            state_dir=Path(state) if state else _default_state_dir(),
            config_dir=Path(config) if config else _default_config_dir(),
        )
