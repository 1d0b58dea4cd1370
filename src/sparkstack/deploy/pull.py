"""`sparkstack pull`: a model's files into the HF cache ahead of serving
("download once, mount everywhere", seeds 001/002), and gpt-oss's tiktoken
encodings beside it.

The listing (file names, sizes, SHA-256 of LFS files, git blob ids), the URLs
and the auth headers come from ``huggingface_hub``, so ``HF_ENDPOINT``,
``HF_TOKEN`` and its other settings apply. The bytes are copied here, into the
cache's own layout (``blobs/<etag>``, ``snapshots/<commit>/<file>``,
``refs/main``), because huggingface_hub 2.x throws a partial file away when its
process ends: sparkstack keeps ``blobs/<etag>.incomplete`` and continues it with
an HTTP range request, so an interrupted pull of a 60 GB model resumes where it
stopped. Every file is checked against the hub's size and hash before it is
moved into place."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, tqdm  # type: ignore[attr-defined]

from sparkstack.deploy.tiktoken_files import ENCODINGS, base_url, encodings_dir
from sparkstack.deploy.weights import repo_cache_dir
from sparkstack.errors import SparkstackError

CHUNK = 1 << 20
_TIMEOUT = 60
_RETRIES = 5


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    blob: str
    """The cache's blob name: the LFS SHA-256, or the git blob id of a small file."""
    sha256: str | None
    git_oid: str | None


@dataclass(frozen=True)
class PullResult:
    repo_id: str
    commit: str
    snapshot: Path
    files: int
    downloaded_bytes: int
    resumed_bytes: int


Progress = Callable[[str, int, int], Callable[[int], None]]
"""progress(label, total, initial) -> advance(n): a bar per file."""


def tqdm_progress(label: str, total: int, initial: int) -> Callable[[int], None]:
    bar = tqdm(  # type: ignore[no-untyped-call]
        total=total, initial=initial, unit="B", unit_scale=True, desc=label, leave=True
    )

    def advance(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return advance


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def list_files(repo_id: str, revision: str = "main") -> tuple[str, list[RemoteFile]]:
    """(commit, files) of ``repo_id`` at ``revision``, asked of the hub."""
    api = HfApi(endpoint=_endpoint(), token=os.environ.get("HF_TOKEN") or None)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = " (gated or private: set HF_TOKEN)" if status in (401, 403) else ""
        raise SparkstackError(f"{repo_id}: the hub refused the file list{hint}: {exc}") from exc
    except OSError as exc:
        raise SparkstackError(
            f"{repo_id}: cannot reach the hub at {_endpoint()} ({exc}); check the network, "
            "or HF_ENDPOINT for a mirror"
        ) from exc
    files = []
    for sibling in info.siblings or []:
        if sibling.size is None or not (sibling.lfs or sibling.blob_id):
            raise SparkstackError(f"{repo_id}: the hub gave no size/hash for {sibling.rfilename}")
        sha = sibling.lfs.sha256 if sibling.lfs else None
        blob = sha or str(sibling.blob_id)
        files.append(RemoteFile(sibling.rfilename, sibling.size, blob, sha, sibling.blob_id))
    if not info.sha:
        raise SparkstackError(f"{repo_id}: the hub gave no commit for {revision}")
    return info.sha, files


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers: dict[str, str] = build_hf_headers(token=os.environ.get("HF_TOKEN") or None)
    return {**headers, **(extra or {})}


def _copy(response: IO[bytes], out: BinaryIO, advance: Callable[[int], None]) -> int:
    copied = 0
    while chunk := response.read(CHUNK):
        out.write(chunk)
        copied += len(chunk)
        advance(len(chunk))
    return copied


def fetch_resumable(url: str, partial: Path, size: int, label: str, progress: Progress) -> int:
    """Download ``url`` into ``partial``, continuing what is there; returns the bytes
    that were already there (resumed)."""
    resumed = partial.stat().st_size if partial.exists() else 0
    if resumed > size:
        partial.unlink()
        resumed = 0
    advance = progress(label, size, resumed)
    for attempt in range(_RETRIES):
        have = partial.stat().st_size if partial.exists() else 0
        if have == size:
            break
        headers = _headers({"Range": f"bytes={have}-"} if have else {})
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                if have and response.status != 206:  # the server ignored the range
                    partial.unlink()
                    advance(-have)
                with partial.open("ab") as out:
                    _copy(response, out, advance)
        except urllib.error.HTTPError as exc:
            hint = " (gated or private: set HF_TOKEN)" if exc.code in (401, 403) else ""
            raise SparkstackError(f"{url}: HTTP {exc.code}{hint}") from exc
        except (urllib.error.URLError, OSError) as exc:
            if attempt == _RETRIES - 1:
                raise SparkstackError(
                    f"{url}: the download broke off ({exc}); run the same `sparkstack pull` "
                    "again: it continues from where it stopped"
                ) from exc
    return resumed


def git_blob_oid(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile) -> None:
    """Raise (and remove ``path``) unless its size and hash are the hub's."""
    size = path.stat().st_size
    if size != remote.size:
        path.unlink()
        raise SparkstackError(
            f"{remote.name}: {size} bytes, the hub says {remote.size}; the partial file was "
            "removed, run `sparkstack pull` again"
        )
    actual, expected = (
        (sha256_file(path), remote.sha256)
        if remote.sha256
        else (git_blob_oid(path), remote.git_oid)
    )
    if actual != expected:
        path.unlink()
        raise SparkstackError(
            f"{remote.name}: hash {actual} is not the hub's {expected}; the file was removed, "
            "run `sparkstack pull` again (a proxy or mirror may be altering files)"
        )


def _link(snapshot: Path, remote: RemoteFile, blob: Path) -> None:
    target = snapshot / remote.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(os.path.relpath(blob, target.parent))


def pull_repo(
    repo_id: str, progress: Progress = tqdm_progress, revision: str = "main"
) -> PullResult:
    """Every file of ``repo_id`` into the HF cache, resumable and verified."""
    commit, files = list_files(repo_id, revision)
    repo = repo_cache_dir(repo_id)
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    downloaded = resumed = 0
    for remote in files:
        blob = blobs / remote.blob
        if not blob.exists():
            partial = blobs / f"{remote.blob}.incomplete"
            url = f"{_endpoint()}/{repo_id}/resolve/{commit}/{remote.name}"
            resumed += fetch_resumable(url, partial, remote.size, remote.name, progress)
            verify(partial, remote)
            partial.replace(blob)
            downloaded += remote.size
        _link(snapshot, remote, blob)
    refs = repo / "refs"
    refs.mkdir(exist_ok=True)
    (refs / revision).write_text(commit)
    return PullResult(repo_id, commit, snapshot, len(files), downloaded, resumed)


def pull_tiktoken(progress: Progress = tqdm_progress) -> Path:
    """gpt-oss's encodings into ``encodings_dir()``, verified against tiktoken's hashes."""
    folder = encodings_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, sha in ENCODINGS.items():
        path = folder / name
        if path.is_file() and sha256_file(path) == sha:
            continue
        partial = folder / f"{name}.incomplete"
        url = f"{base_url()}/{name}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=30
            ) as r:
                size = int(r.headers.get("Content-Length", "0"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SparkstackError(
                f"{url}: cannot reach it ({exc}); set SPARKSTACK_TIKTOKEN_URL to a mirror holding "
                f"{', '.join(ENCODINGS)}, or copy them into {folder}"
            ) from exc
        fetch_resumable(url, partial, size, name, progress)
        verify(partial, RemoteFile(name, size, sha, sha, None))
        partial.replace(path)
    return folder
