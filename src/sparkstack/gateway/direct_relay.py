"""Relaying one engine answer to the client from the engine connection's own
callbacks (``upstream_fast.UpstreamAnswer``): the request's bytes go out from
the client parser's callback and the answer's come back from the engine's, with
no task, future or loop turn in between — the common case on the lean server
(a ready engine on plain HTTP). Plain answers are buffered to their end and
sent in one write; streams are written chunk by chunk as they arrive, the
engine's reading paused while the client's side is.

Everything ends in ``finish`` exactly once: answered, failed, refused before
sending, or cancelled because the client went away."""

from __future__ import annotations

import time
from collections.abc import Callable

from sparkstack.errors import GatewayError
from sparkstack.gateway.context import EVENT_STREAM, RequestContext
from sparkstack.gateway.fastanswer import Answer
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.openai_errors import sse_error_event
from sparkstack.gateway.upstream_failures import (
    broke_off,
    no_answer,
    plain_answer,
    stopped_mid_stream,
    stream_finished,
)
from sparkstack.gateway.upstream_fast import UpstreamAnswer
from sparkstack.supervisor.runtime import ModelRuntime


class DirectRelay(UpstreamAnswer):
    __slots__ = (
        "ctx", "down", "runtime", "metrics", "finish", "finished", "streaming", "paused",
        "body", "sent", "tail",
    )  # fmt: skip

    def __init__(
        self,
        ctx: RequestContext,
        down: Answer,
        runtime: ModelRuntime,
        metrics: GatewayMetrics,
        finish: Callable[[], None],
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.down = down
        self.runtime = runtime
        self.metrics = metrics
        self.finish = finish
        self.finished = False
        self.streaming = False
        self.paused = False
        self.body: list[bytes] = []
        self.sent = 0
        self.tail = b""

    # the engine's side

    def on_head(self) -> None:
        self.runtime.last_byte = time.monotonic()
        content_type = self.content_type
        if content_type.startswith(EVENT_STREAM):
            self.streaming = True
            self.down.start_stream_now(self.status, content_type)

    def on_chunk(self, body: bytes) -> None:
        if not self.streaming:
            self.body.append(body)
            return
        self.runtime.last_byte = time.monotonic()
        if not self.sent:
            ctx = self.ctx
            ctx.ttft = time.perf_counter() - ctx.started
            self.metrics.ttft[self.runtime.name].observe(ctx.ttft)
        down = self.down
        down.write_now(body)
        self.sent += len(body)
        self.tail = body
        if down.conn.write_paused and not self.paused:
            self._pause(True)

    # Both ends below let go of the engine's connection first, so nothing calls
    # back into this relay again: ``finish`` runs even if answering fails (a bug
    # then ends the client's connection instead of leaving it and its slot held).

    def on_complete(self) -> None:
        self.release()
        try:
            if self.streaming:
                self._end_stream()
            else:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                name = self.runtime.name
                content_type, data = plain_answer(
                    self.metrics, name, self.status, self.content_type, body
                )
                self.ctx.bytes_out = len(data)
                self.down.send_now(self.status, content_type, data)
        finally:
            self._finish()

    def on_error(self, error: BaseException) -> None:
        self.close()
        try:
            if self.streaming:
                if not stream_finished(self.tail):
                    stopped = stopped_mid_stream(self.metrics, self.runtime.name)
                    self.down.write_now(sse_error_event(stopped))
                self._end_stream()
            elif self.headed:
                self._answer_error(broke_off(self.metrics, self.runtime.name, error))
            else:
                self._answer_error(no_answer(self.metrics, self.runtime, error))
        finally:
            self._finish()

    # the client's side

    def refuse(self, error: GatewayError) -> None:
        """The request could not be sent (nothing was)."""
        self.done = True
        self._answer_error(error)
        self._finish()

    def resume(self) -> None:
        """The client's side can take more: read the engine again."""
        if self.paused:
            self._pause(False)

    def cancel(self) -> None:
        """The client went away: drop the engine's connection (its work stops)."""
        if self.finished:
            return
        self.close()
        self.metrics.error(self.runtime.name, "client_disconnect")
        if self.streaming:
            self._count_stream()
        self._finish()

    def _pause(self, paused: bool) -> None:
        self.paused = paused
        conn = self.conn
        if conn is not None and conn.transport is not None and not conn.lost:
            if paused:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()

    def _answer_error(self, error: GatewayError) -> None:
        self.ctx.bytes_out = self.down.send_error_now(error)

    def _count_stream(self) -> None:
        self.metrics.bytes_out[self.runtime.name] += self.sent
        self.ctx.bytes_out = self.sent

    def _end_stream(self) -> None:
        self._count_stream()
        self.down.end_now()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.finish()
