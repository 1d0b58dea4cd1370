"""Engine adapters: the only code that knows an engine's flags, endpoints and logs."""

from sparkstack.engines.base import EngineAdapter, LaunchSpec
from sparkstack.engines.registry import get_engine, known_engines, register_engine

__all__ = ["EngineAdapter", "LaunchSpec", "get_engine", "known_engines", "register_engine"]
