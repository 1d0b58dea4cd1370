"""The exported nginx site in front of a gateway with a real engine (SmolLM2 on
llama.cpp), run by the real Debian nginx (issue 13, point 1): a streamed answer's
first chunk arrives within 50 ms of arriving direct, and a 10 MiB body passes."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from benchmarks.nginx_front import compare, export_site, smol_stack

from sparkstack.supervisor.ports import free_port
from tests.nginx_run import nginx_running, write_config
from tests.support import serving


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(gateway host:port, nginx host:port) with smol ready behind both."""
    tmp = tmp_path_factory.mktemp("nginx-front")
    gateway_port, nginx_port = free_port(), free_port()
    stack = smol_stack(tmp, gateway_port)
    conf = write_config(tmp / "nginx", {"smol": export_site(stack, f"127.0.0.1:{nginx_port}")})
    with serving(stack, tmp / "state", timeout=180, port=gateway_port):
        with nginx_running(conf, f"http://127.0.0.1:{nginx_port}/health"):
            yield f"127.0.0.1:{gateway_port}", f"127.0.0.1:{nginx_port}"


def test_first_chunk_through_nginx_within_50ms_of_direct(front: tuple[str, str]) -> None:
    direct, through_nginx = front
    result = compare(direct, through_nginx, rounds=8, max_tokens=8)
    assert result.added_first_chunk_ms < 50, result


def test_a_10_mib_body_passes(front: tuple[str, str]) -> None:
    _, through_nginx = front
    padding = "x" * (10 * 2**20)  # an unknown field: the engine ignores it, the body is 10 MiB
    body = json.dumps({
        "model": "smol", "max_tokens": 4, "padding": padding,
        "messages": [{"role": "user", "content": "Say hi."}],
    })  # fmt: skip
    assert len(body) > 10 * 2**20
    conn = http.client.HTTPConnection(through_nginx, timeout=120)
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, answer
    assert answer["choices"][0]["message"]["content"]
