"""`sparkstack keys` and the safety rules of `up`: no listening beyond loopback
without a key, secrets from .env (never argv)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sparkstack.supervisor.ports import free_port
from tests.http_stub import QuietHandler, http_server
from tests.support import SPARKSTACK, start_up


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPARKSTACK, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARKSTACK_CONFIG_DIR": str(tmp_path / "config"),
        "SPARKSTACK_STATE_DIR": str(tmp_path / "state"),
    }


def test_keys_create_list_revoke(env: dict[str, str]) -> None:
    created = run(env, "keys", "create", "laptop", "--models", "smol,minilm", "--rate", "60")
    assert created.returncode == 0
    assert "shown once" in created.stdout
    secret = created.stdout.split()[-1]
    assert secret.startswith("sk-ss-")
    listing = run(env, "keys", "list").stdout
    assert "laptop" in listing and "smol,minilm" in listing and "active" in listing
    assert secret not in listing
    duplicate = run(env, "keys", "create", "laptop")
    assert duplicate.returncode == 1 and "exists" in duplicate.stderr
    revoked = run(env, "keys", "revoke", "laptop")
    assert revoked.returncode == 0
    assert "revoked" in run(env, "keys", "list").stdout
    missing = run(env, "keys", "revoke", "nobody")
    assert missing.returncode == 1 and "sparkstack keys list" in missing.stderr


def test_a_key_carries_its_queue_priority(env: dict[str, str], tmp_path: Path) -> None:
    assert run(env, "keys", "create", "chat", "--priority", "7").returncode == 0
    listing = run(env, "keys", "list").stdout
    assert "PRIO" in listing.splitlines()[0]
    assert listing.splitlines()[1].split()[-2] == "7"
    stored = json.loads((tmp_path / "config" / "keys.json").read_text())
    assert stored["keys"][0]["priority"] == 7
    too_high = run(env, "keys", "create", "greedy", "--priority", "5000")
    assert too_high.returncode != 0 and "5000" in too_high.stderr


def test_listening_beyond_loopback_needs_a_key(env: dict[str, str], tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("models:\n  remote: {engine: external, url: 'http://127.0.0.1:9'}\n")
    refused = run(env, "up", str(stack), "--listen", f"0.0.0.0:{free_port()}")
    assert refused.returncode == 1
    assert "is missing" in refused.stderr and "open to the network" in refused.stderr
    assert "sparkstack keys create NAME" in refused.stderr


class KeyEcho(QuietHandler):
    seen: list[str] = []

    def do_POST(self) -> None:
        KeyEcho.seen.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_body(200, b'{"object": "chat.completion", "choices": []}')


@pytest.fixture
def upstream() -> Iterator[int]:
    with http_server(KeyEcho) as port:
        yield port


def test_external_key_comes_from_dotenv_not_argv(tmp_path: Path, upstream: int) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / ".env").write_text("REMOTE_KEY='sk-upstream-secret'\n")
    (folder / ".env").chmod(0o600)
    stack = folder / "stack.yaml"
    stack.write_text(
        f"models:\n  remote:\n    engine: external\n    url: http://127.0.0.1:{upstream}\n"
        "    api_key_env: REMOTE_KEY\n"
    )
    up = start_up(stack, tmp_path / "state")
    try:
        up.wait_ready(timeout=60)
        request = urllib.request.Request(
            up.url + "/v1/chat/completions", data=b'{"model": "remote"}',
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert KeyEcho.seen[-1] == "Bearer sk-upstream-secret"
        argv = " ".join(psutil.Process(up.proc.pid).cmdline())
        assert "sk-upstream-secret" not in argv
    finally:
        up.sparkstack("down")
        up.kill()
