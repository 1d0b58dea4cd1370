"""Are a stack's weights on this machine? A model given as a HF repo id is
present when its snapshot in the HF cache is whole: ``refs/main`` names a
snapshot, every shard its index lists is there, and no download is left
``.incomplete``. Local folders, ``.gguf`` files and ``pkg:`` sources are always
local; external models have no weights here.

``require_weights`` is the check `up` runs before planning: a model whose weights
are missing while the hub cannot be reached (``HF_HUB_OFFLINE=1``, or no answer
within a few seconds) stops `up` at once with the `sparkstack pull` command,
instead of an engine failing minutes later."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.hub import hf_cache_dir
from sparkstack.stack.schema import Stack
from sparkstack.stack.sources import PKG_PREFIX

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
PROBE_TIMEOUT_S = 3.0


def is_repo_id(source: str | None) -> bool:
    """A HF repo id (``org/name``), not a local path or a ``pkg:`` source."""
    if not source or source.startswith(PKG_PREFIX) or Path(source).expanduser().exists():
        return False
    return bool(_REPO_ID.match(source))


def repo_cache_dir(repo_id: str) -> Path:
    return hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"


def snapshot_dir(repo_id: str, revision: str = "main") -> Path | None:
    ref = repo_cache_dir(repo_id) / "refs" / revision
    if not ref.is_file():
        return None
    folder = repo_cache_dir(repo_id) / "snapshots" / ref.read_text().strip()
    return folder if folder.is_dir() else None


def weights_present(repo_id: str) -> bool:
    """True when the cached snapshot of ``repo_id`` holds whole weights."""
    folder = snapshot_dir(repo_id)
    if folder is None:
        return False
    blobs = repo_cache_dir(repo_id) / "blobs"
    if blobs.is_dir() and any(p.name.endswith(".incomplete") for p in blobs.iterdir()):
        return False
    for index in folder.glob("*.index.json"):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        return all((folder / shard).is_file() for shard in shards)
    return any(p.name.endswith(_WEIGHT_SUFFIXES) for p in folder.rglob("*") if p.is_file())


def missing_models(stack: Stack) -> dict[str, str]:
    """Model name -> repo id, for the managed models whose weights are not cached."""
    return {
        name: spec.model
        for name, spec in stack.models.items()
        if spec.engine != "external" and spec.model and is_repo_id(spec.model)
        if not weights_present(spec.model)
    }


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False


def pull_command(stack_file: Path | None, repo_id: str) -> str:
    return f"sparkstack pull {stack_file}" if stack_file else f"sparkstack pull {repo_id}"


def require_weights(stack: Stack, stack_file: Path | None) -> None:
    """Raise when a model's weights are missing and the hub cannot be reached."""
    missing = missing_models(stack)
    if not missing or hub_reachable():
        return
    listed = ", ".join(f"{name} ({repo})" for name, repo in missing.items())
    first = next(iter(missing.values()))
    raise SparkstackError(
        f"the weights of {listed} are not in the HF cache ({hf_cache_dir()}) and the hub "
        "cannot be reached (offline); nothing was started. Download them first, where the "
        f"hub is reachable: `{pull_command(stack_file, first)}`"
    )
