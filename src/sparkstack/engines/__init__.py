"""Engine adapters: the only code that knows an engine's flags, endpoints and logs.
Importing the package registers the built-in adapters."""

from sparkstack.engines import external, llamacpp, sglang, trtllm, vllm
from sparkstack.engines.base import EngineAdapter, LaunchSpec
from sparkstack.engines.registry import get_engine, known_engines, register_engine

__all__ = [
    "EngineAdapter",
    "LaunchSpec",
    "external",
    "get_engine",
    "known_engines",
    "llamacpp",
    "register_engine",
    "sglang",
    "trtllm",
    "vllm",
]
