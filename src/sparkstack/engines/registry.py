"""Engines by name. Built-in adapters register the same way a third party does:
through ``register_engine`` (the package imports them, so importing anything from
``sparkstack.engines`` registers them) or the ``sparkstack.engines`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from sparkstack.engines.base import EngineAdapter
from sparkstack.errors import EngineError

_ENGINES: dict[str, EngineAdapter] = {}
_loaded = False


def register_engine(adapter: type[EngineAdapter]) -> type[EngineAdapter]:
    """Class decorator: make ``adapter`` available under ``adapter.name``."""
    _ENGINES[adapter.name] = adapter()
    return adapter


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for entry in entry_points(group="sparkstack.engines"):
        register_engine(entry.load())


def known_engines() -> list[str]:
    _load()
    return sorted(_ENGINES)


def forwarded_routes() -> list[str]:
    """Every gateway route some engine serves (each adapter's ``routes``), sorted."""
    _load()
    return sorted({route for adapter in _ENGINES.values() for route in adapter.routes})


def get_engine(name: str) -> EngineAdapter:
    _load()
    try:
        return _ENGINES[name]
    except KeyError:
        raise EngineError(
            f"unknown engine {name!r}; use one of: {', '.join(sorted(_ENGINES))}"
        ) from None
