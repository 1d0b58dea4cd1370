"""The exported nginx site in front of a real gateway, run by the real Debian
nginx (issue 13, point 1): `nginx -t` with two exported stacks side by side,
/health without a key, and a stream that outlasts nginx's 60 s default."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkstack.supervisor.ports import free_port
from tests.http_stub import QuietHandler, http_server
from tests.nginx_run import nginx_running, nginx_test, write_config
from tests.support import REPO, UpProcess, serving

SILENCE_S = 65.0  # longer than nginx's 60 s default proxy_read_timeout


def export_nginx(stack_file: Path, server_name: str, listen: str, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "nginx", str(stack_file),
         "--server-name", server_name, "--listen", listen, *extra],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_exported_stacks_pass_nginx_t(tmp_path: Path) -> None:
    demo = tmp_path / "demo.yaml"
    demo.write_text((REPO / "src/sparkstack/stack/demo.yaml").read_text())
    seed = REPO / "examples/seed002-qwen36-35b-fp8.yaml"
    sites = {
        "demo.example.com": export_nginx(demo, "demo.example.com", f"127.0.0.1:{free_port()}"),
        "qwen.example.com": export_nginx(seed, "qwen.example.com", f"127.0.0.1:{free_port()}"),
    }
    result = nginx_test(write_config(tmp_path / "ok", sites))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr

    # The trap the unique names avoid: the same upstream name in two enabled files.
    stale = {**sites, "stale-copy": sites["demo.example.com"]}
    result = nginx_test(write_config(tmp_path / "dup", stale))
    assert result.returncode != 0 and "duplicate upstream" in result.stderr


def test_site_text_has_the_seed_lessons(tmp_path: Path) -> None:
    stack = tmp_path / "s.yaml"
    stack.write_text(
        "gateway: {listen: '0.0.0.0:9000', max_body_mib: 96}\n"
        "models:\n  x: {engine: external, url: 'http://10.0.0.5:8000'}\n"
    )
    text = export_nginx(stack, "llm.example.com", "80", "--upstream-ip", "192.168.0.50")
    for line in (
        "server 192.168.0.50:9000;", "keepalive 32;", "listen 80;", "listen [::]:80;",
        "client_max_body_size 96m;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
        "proxy_buffering off;", "proxy_cache off;", "add_header X-Accel-Buffering no always;",
        "proxy_read_timeout 3600s;", "proxy_send_timeout 3600s;", "location = /health",
        "upstream sparkstack_s_llm_example_com_9000 {",
    ):  # fmt: skip
        assert line in text, line
    assert "ssl" not in text.replace("certbot", "").split("server {", 1)[1]  # HTTP first


def test_a_name_as_upstream_is_refused(tmp_path: Path) -> None:
    stack = tmp_path / "s.yaml"
    stack.write_text("gateway: {listen: 'spark.local:8080'}\nmodels:\n"
                     "  x: {engine: external, url: 'http://10.0.0.5:8000'}\n")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "nginx", str(stack),
         "--server-name", "a.example.com"], capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1 and "--upstream-ip" in result.stderr


def sse(content: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": content}}]}).encode() + b"\n\n"


class SlowStream(QuietHandler):
    """An OpenAI stream with a first chunk, then SILENCE_S of silence, then the end."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_body(200, b'{"data": []}')

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(sse("first"))
        time.sleep(SILENCE_S)
        self._chunk(sse("last"))
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


@pytest.fixture(scope="module")
def slow_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, str, str]]:
    """A gateway with keys on (model `slow`: the stub) behind the exported site in nginx;
    yields it, nginx's host:port and a key."""
    tmp = tmp_path_factory.mktemp("nginx-slow")
    env = {**os.environ, "SPARKSTACK_CONFIG_DIR": str(tmp / "state" / "config")}
    key = subprocess.run(
        [sys.executable, "-m", "sparkstack", "keys", "create", "nginx-test", "--quiet"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    with http_server(SlowStream) as stub_port:
        gateway_port, nginx_port = free_port(), free_port()
        stack = tmp / "slow.yaml"
        stack.write_text(
            f"gateway: {{listen: '127.0.0.1:{gateway_port}'}}\n"
            f"models:\n  slow: {{engine: external, url: 'http://127.0.0.1:{stub_port}'}}\n"
        )
        site = export_nginx(stack, "slow.example.com", f"127.0.0.1:{nginx_port}")
        conf = write_config(tmp / "nginx", {"slow.example.com": site})
        with serving(stack, tmp / "state", port=gateway_port) as up:
            with nginx_running(conf, f"http://127.0.0.1:{nginx_port}/health"):
                yield up, f"127.0.0.1:{nginx_port}", key


def test_health_passes_without_a_key(slow_front: tuple[UpProcess, str, str]) -> None:
    _, front, key = slow_front
    conn = http.client.HTTPConnection(front, timeout=10)
    conn.request("GET", "/health")
    health = conn.getresponse()
    assert health.status == 200 and json.loads(health.read())["status"] == "ok"
    conn.request("GET", "/v1/models")
    refused = conn.getresponse()
    assert refused.status == 401 and refused.read()  # keys are on: only /health is open
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    allowed = conn.getresponse()
    assert allowed.status == 200, allowed.read()
    assert [m["id"] for m in json.loads(allowed.read())["data"]] == ["slow"]
    conn.close()


def test_a_stream_that_outlasts_60s_is_not_cut(slow_front: tuple[UpProcess, str, str]) -> None:
    _, front, key = slow_front
    conn = http.client.HTTPConnection(front, timeout=SILENCE_S + 30)
    chat = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    started = time.monotonic()
    conn.request("POST", "/v1/chat/completions", json.dumps(chat), headers)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("X-Accel-Buffering") == "no"
    received = b""
    first_at = None
    while chunk := response.read1(65536):
        received += chunk
        if first_at is None and b"first" in received:
            first_at = time.monotonic() - started
    elapsed = time.monotonic() - started
    conn.close()
    assert first_at is not None and first_at < 5, "the first chunk was held back"
    assert elapsed >= SILENCE_S
    assert b'"last"' in received and received.rstrip().endswith(b"data: [DONE]"), received[-300:]
