"""Hugging Face repositories: the local cache first (``$HF_HOME/hub``, the layout
``models--ORG--NAME/snapshots/REV`` with ``refs/main``), then the hub over HTTP
(``$HF_ENDPOINT``, default https://huggingface.co) for config.json and the
safetensors headers only, with HTTP range requests — never the weights."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.safetensors_headers import TensorInfo, header_length, parse_header

_TIMEOUT = 30


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of ``repo_id`` that ``refs/main`` names, if any."""
    repo = hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    snapshots = repo / "snapshots"
    if ref.is_file():
        folder = snapshots / ref.read_text().strip()
        if (folder / "config.json").exists():
            return folder
    if snapshots.is_dir():
        for folder in sorted(snapshots.iterdir()):
            if (folder / "config.json").exists():
                return folder
    return None


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _get(url: str, byte_range: tuple[int, int] | None = None) -> bytes:
    request = urllib.request.Request(url)
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if byte_range:
        request.add_header("Range", f"bytes={byte_range[0]}-{byte_range[1]}")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        hint = " (gated or private: set HF_TOKEN)" if exc.code in (401, 403) else ""
        raise SparkstackError(f"{url}: HTTP {exc.code}{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SparkstackError(
            f"{url}: cannot reach the hub ({exc}); download the model first "
            "(`hf download REPO`) or pass a local folder"
        ) from exc


def fetch_remote(repo_id: str) -> tuple[dict[str, object], list[TensorInfo]]:
    """config.json and every safetensors header of ``repo_id``, from the hub."""
    base = f"{_endpoint()}/{repo_id}"
    config = json.loads(_get(f"{base}/resolve/main/config.json"))
    listing = json.loads(_get(f"{_endpoint()}/api/models/{repo_id}"))
    names = sorted(
        s["rfilename"]
        for s in listing.get("siblings", [])
        if str(s.get("rfilename", "")).endswith(".safetensors") and "/" not in s["rfilename"]
    )
    tensors: list[TensorInfo] = []
    for name in names:
        url = f"{base}/resolve/main/{name}"
        length = header_length(_get(url, (0, 7)))
        tensors.extend(parse_header(_get(url, (8, 8 + length - 1))))
    return config, tensors
