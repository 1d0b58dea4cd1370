"""The gateway's request guards: Host names, origins, content types, strict JSON
and engine error excerpts."""

from __future__ import annotations

import pytest

from sparkstack.errors import GatewayError
from sparkstack.gateway.engine_errors import engine_error, is_openai_error
from sparkstack.gateway.guard import AccessGuard, check_content_type, host_name
from sparkstack.gateway.payload import parse_payload
from sparkstack.stack.schema import GatewaySpec


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8080", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8080", "::1"),
     ("example.com.", "example.com"), ("::1", "::1")],
)  # fmt: skip
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_guard_hosts_and_origins() -> None:
    guard = AccessGuard(
        GatewaySpec(listen="127.0.0.1:8080", cors_origins=["http://localhost:3000"],
                    allowed_hosts=["llm.lan"]),
        lambda: False,
    )  # fmt: skip
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "llm.lan"):
        guard.check_host(host)
    for forged in ("evil.example", "127.0.0.2:8080", "", None):
        with pytest.raises(GatewayError):
            guard.check_host(forged)
    assert guard.check_origin(None, "127.0.0.1:8080", "/admin/status") is None
    assert guard.check_origin("http://127.0.0.1:8080", "127.0.0.1:8080", "/v1/models") is None
    allowed = guard.check_origin("http://localhost:3000/", "127.0.0.1:8080", "/v1/models")
    assert allowed == "http://localhost:3000"
    with pytest.raises(GatewayError) as refused:
        guard.check_origin("http://evil.example", "127.0.0.1:8080", "/admin/models/x/unload")
    assert refused.value.status == 403 and refused.value.code == "origin_not_allowed"
    assert guard.check_origin("http://evil.example", "127.0.0.1:8080", "/health") is None


def test_wildcard_listen_answers_any_host() -> None:
    AccessGuard(GatewaySpec(listen="0.0.0.0:8080"), lambda: True).check_host("box.lan:8080")


@pytest.mark.parametrize(
    "value", [None, "application/json", "application/json; charset=utf-8", "application/vnd.x+json"]
)
def test_json_content_types_pass(value: str | None) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"]
)
def test_other_content_types_are_415(value: str) -> None:
    with pytest.raises(GatewayError) as refused:
        check_content_type(value)
    assert refused.value.status == 415


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = b'{"model": "m", "prompt": "' + b"[" * 1000 + b'"}'
    assert parse_payload(body)[1] == "m"


def test_engine_errors() -> None:
    assert is_openai_error("application/json", b'{"error": {"message": "x"}}')
    assert is_openai_error("application/json", b'{"object": "error", "message": "x"}')
    assert not is_openai_error("application/json", b'{"detail": "x"}')
    assert not is_openai_error("text/html", b'{"error": "x"}')
    error = engine_error("m", 500, "text/html", b"<html><p>" + b"boom " * 1000 + b"</p></html>")
    assert error.status == 500 and "boom" in error.message and "<p>" not in error.message
    assert len(error.message) < 600
