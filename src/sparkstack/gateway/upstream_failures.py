"""What a client is told when its engine cannot answer well, and the error each
case counts in the gateway's metrics, for both relays (relay.py awaits the
engine, direct_relay.py is called back by it): not reachable (502), silent past
the read timeout (504), a plain answer broken off (502), a stream that stopped
before its ``[DONE]`` (an in-band error event)."""

from __future__ import annotations

from sparkstack.errors import GatewayError
from sparkstack.gateway.context import JSON
from sparkstack.gateway.engine_errors import engine_error, is_openai_error
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import error_json, upstream_error
from sparkstack.supervisor.runtime import ModelRuntime


def no_answer(metrics: GatewayMetrics, runtime: ModelRuntime, exc: BaseException) -> GatewayError:
    """No answer head came: the engine is not reachable, or did not answer in time."""
    if isinstance(exc, TimeoutError):
        metrics.error(runtime.name, "upstream_timeout")
        return upstream_error(
            f"The engine of model {runtime.name!r} did not answer in time.", status=504
        )
    metrics.error(runtime.name, "upstream_unreachable")
    return upstream_error(
        f"The engine of model {runtime.name!r} is not reachable at {runtime.base_url} "
        f"({exc}); see `sparkstack logs {runtime.name}`."
    )


def broke_off(metrics: GatewayMetrics, name: str, exc: BaseException) -> GatewayError:
    """A plain answer whose body did not arrive whole."""
    metrics.error(name, "upstream_died")
    return upstream_error(f"The engine of model {name!r} broke off its answer ({exc}).")


def stopped_mid_stream(metrics: GatewayMetrics, name: str) -> GatewayError:
    metrics.error(name, "upstream_died_mid_stream")
    return upstream_error(f"The engine of model {name!r} stopped in the middle of the stream.")


def stream_finished(tail: bytes) -> bool:
    """Whether the last piece relayed ends the stream (a break after it harms nobody)."""
    return tail.rstrip().endswith(b"[DONE]")


def plain_answer(
    metrics: GatewayMetrics, name: str, status: int, content_type: str, data: bytes
) -> tuple[str, bytes]:
    """The content type and body to answer a whole (non-streamed) engine answer
    with: passed through, except an error that is not OpenAI-shaped."""
    metrics.bytes_out[name] += len(data)
    if status >= 400:
        if status >= 500:
            metrics.error(name, "upstream_status")
        if not is_openai_error(content_type, data):
            return JSON, error_json(engine_error(name, status, content_type, data))
    return content_type, data
