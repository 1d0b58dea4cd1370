"""Engines are reachable only through the gateway (issue 19, point 2): from outside
the gateway, each demo engine refuses a request without its key on its control
and inference paths alike - vLLM's /sleep, /collective_rpc, /invocations,
/metrics, ... (vLLM itself guards only /v1) and llama.cpp's /v1 and /docs -
while the gateway, which holds the keys, serves them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support import UpProcess

pytestmark = pytest.mark.engines

PATHS = {
    "minilm": [  # vLLM
        ("POST", "/sleep?level=1"), ("POST", "/wake_up"), ("GET", "/is_sleeping"),
        ("POST", "/collective_rpc"), ("POST", "/reset_prefix_cache"), ("POST", "/invocations"),
        ("GET", "/metrics"), ("GET", "/health"), ("POST", "/tokenize"), ("GET", "/v1/models"),
        ("POST", "/v1/embeddings"), ("GET", "/docs"), ("GET", "/openapi.json"),
    ],
    "smol": [  # llama.cpp
        ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
        ("POST", "/extras/tokenize"), ("GET", "/docs"), ("GET", "/openapi.json"),
    ],
}  # fmt: skip


def status_of(url: str, method: str, key: str | None = None) -> int:
    request = urllib.request.Request(
        url, method=method, data=b"{}" if method == "POST" else None,
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {key}"} if key else {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def assert_engines_refuse_without_key(up: UpProcess) -> None:
    """Every path of PATHS answers 401 without the engine's key and with a wrong one."""
    rows = json.loads(up.sparkstack("status", "--json").stdout)["models"]
    ports = {row["name"]: row["port"] for row in rows}
    for name, paths in PATHS.items():
        for method, path in paths:
            url = f"http://127.0.0.1:{ports[name]}{path}"
            assert status_of(url, method) == 401, (name, method, path)
            assert status_of(url, method, key="not-the-key") == 401, (name, method, path)


def test_each_engine_refuses_every_path_without_its_key(demo_up: UpProcess) -> None:
    assert_engines_refuse_without_key(demo_up)


def test_the_gateway_still_reaches_both(demo_up: UpProcess) -> None:
    assert status_of(demo_up.url + "/metrics", "GET") == 200
    body = json.dumps({"model": "minilm", "input": "hi"}).encode()
    request = urllib.request.Request(
        demo_up.url + "/v1/embeddings", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
