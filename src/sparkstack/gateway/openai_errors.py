"""Errors in the OpenAI error shape, as a JSON response (before a stream starts)
or as an in-band SSE event (after a 200 was already sent)."""

from __future__ import annotations

import json

from aiohttp import web

from sparkstack.errors import GatewayError


def error_body(error: GatewayError) -> dict[str, object]:
    return {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }


def error_json(error: GatewayError) -> bytes:
    return json.dumps(error_body(error)).encode()


def error_response(error: GatewayError) -> web.Response:
    response = web.json_response(error_body(error), status=error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def sse_error_event(error: GatewayError) -> bytes:
    """An SSE ``data:`` event carrying the error, followed by ``[DONE]``."""
    return b"data: " + error_json(error) + b"\n\ndata: [DONE]\n\n"


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(message, status=400, error_type="invalid_request_error", param=param)


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        f"The request body is larger than the limit of {limit} bytes (gateway.max_body_mib).",
        status=413,
        error_type="invalid_request_error",
        code="request_too_large",
    )


def upstream_error(message: str, status: int = 502) -> GatewayError:
    return GatewayError(message, status=status, error_type="upstream_error", code="engine_error")


def bad_header(message: str, status: int = 400, code: str = "invalid_header") -> GatewayError:
    return GatewayError(message, status=status, error_type="invalid_request_error", code=code)


def forbidden(message: str, code: str) -> GatewayError:
    return GatewayError(message, status=403, error_type="permission_error", code=code)


def timed_out(what: str, seconds: float, setting: str) -> GatewayError:
    return GatewayError(
        f"The client did not send {what} within {seconds:g} s (gateway.{setting}).",
        status=408, error_type="invalid_request_error", code="request_timeout",
    )  # fmt: skip
