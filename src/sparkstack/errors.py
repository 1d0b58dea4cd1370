"""The one exception tree of sparkstack.

Every error a user can see is a ``SparkstackError`` whose message says what was
wrong and what to do about it. Third-party exceptions (yaml, pydantic, OSError,
aiohttp) are mapped into this tree at the boundary that calls them, with
``raise ... from exc``::

    SparkstackError
    ├── StackError            the stack file: syntax, schema, references
    ├── DoesNotFitError       the plan does not fit the machine (exit code 3)
    ├── EngineError           an engine adapter: missing runtime, bad options
    │   └── EngineStartError  a process that did not become ready
    ├── SupervisorError       process management, run state of `up`/`down`
    ├── ClusterError          a Ray cluster node: interface, address, join, loss
    ├── GatewayError          the HTTP gateway (carried to clients as OpenAI errors)
    └── TelemetryError        watching a gateway: unreachable, key refused, not a gateway
"""

from __future__ import annotations


class SparkstackError(Exception):
    """Base of every error sparkstack raises on purpose."""


class StackError(SparkstackError):
    """The stack file is unreadable or invalid; the message names file, line and field."""


class DoesNotFitError(SparkstackError):
    """The stack's plan needs more memory than the machine's budget."""


class EngineError(SparkstackError):
    """An engine adapter cannot build or run its command."""


class EngineStartError(EngineError):
    """An engine process exited or timed out before it became ready."""


class SupervisorError(SparkstackError):
    """Starting, tracking or stopping processes failed."""


class ClusterError(SparkstackError):
    """A cluster node is misconfigured, unreachable, missing or lost."""


class GatewayError(SparkstackError):
    """A request could not be served; carries the HTTP status and OpenAI error fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        """Seconds for a Retry-After header (a refusal that passes with time)."""


class TelemetryError(SparkstackError):
    """A status client (``sparkstack top``) could not read a gateway's status."""
