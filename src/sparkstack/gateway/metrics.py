"""The gateway's own Prometheus metrics, kept in plain dicts (no locks: one event
loop), rendered as Prometheus text; and engine metrics relayed with a ``model``
label added to every sample."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
           300.0)  # fmt: skip
Labels = tuple[tuple[str, str], ...]


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.count += 1


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class GatewayMetrics:
    requests: dict[Labels, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[Labels, int] = field(default_factory=lambda: defaultdict(int))
    events: dict[Labels, int] = field(default_factory=lambda: defaultdict(int))
    latency: dict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    ttft: dict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    inflight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    queued: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    host: dict[str, float] = field(default_factory=dict)
    """Machine gauges: memory_available_bytes, memory_floor_bytes (the watchdog's)."""

    def request_done(self, model: str, route: str, status: int, seconds: float) -> None:
        self.requests[(("model", model), ("route", route), ("status", str(status)))] += 1
        self.latency[model].observe(seconds)

    def error(self, model: str, kind: str) -> None:
        self.errors[(("model", model), ("kind", kind))] += 1

    def event(self, model: str, kind: str) -> None:
        self.events[(("model", model), ("event", kind))] += 1

    def render(self) -> str:
        out: list[str] = []

        def counter(name: str, help_text: str, values: dict[Labels, int]) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} counter")
            out.extend(f"{name}{_fmt(labels)} {value}" for labels, value in values.items())

        def gauge(name: str, help_text: str, values: dict[str, int], kind: str = "gauge") -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}")
            out.extend(f'{name}{{model="{_escape(m)}"}} {v}' for m, v in values.items())

        def histogram(name: str, help_text: str, values: dict[str, Histogram]) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} histogram")
            for model, hist in values.items():
                running = 0
                for bound, count in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    out.append(f'{name}_bucket{{model="{_escape(model)}",le="{le}"}} {running}')
                out.append(f'{name}_sum{{model="{_escape(model)}"}} {hist.total}')
                out.append(f'{name}_count{{model="{_escape(model)}"}} {hist.count}')

        counter("sparkstack_requests_total", "Requests answered, by model, route, status.",
                self.requests)  # fmt: skip
        counter("sparkstack_errors_total", "Errors by model and kind.", self.errors)
        counter("sparkstack_model_events_total", "Model lifecycle events.", self.events)
        histogram("sparkstack_request_duration_seconds", "Request latency at the gateway.",
                  self.latency)  # fmt: skip
        histogram("sparkstack_time_to_first_token_seconds",
                  "Time to the first streamed chunk, at the gateway.", self.ttft)  # fmt: skip
        gauge("sparkstack_requests_in_flight", "Requests being served.", self.inflight)
        gauge("sparkstack_requests_queued", "Requests waiting for their model.", self.queued)
        gauge("sparkstack_request_bytes_total", "Request body bytes received.", self.bytes_in,
              "counter")  # fmt: skip
        gauge("sparkstack_response_bytes_total", "Response bytes relayed.", self.bytes_out,
              "counter")  # fmt: skip
        for name, value in self.host.items():
            out.append(f"# TYPE sparkstack_{name} gauge\nsparkstack_{name} {value}")
        return "\n".join(out) + "\n"


def relabel(text: str, model: str, seen_meta: set[str]) -> list[str]:
    """Engine metric lines with ``model="..."`` added; HELP/TYPE kept once per family."""
    label = f'model="{_escape(model)}"'
    out: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            if line not in seen_meta:
                seen_meta.add(line)
                out.append(line)
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            rest = line[brace + 1 :]
            out.append(f"{line[: brace + 1]}{label}{'' if rest.startswith('}') else ','}{rest}")
        elif space != -1:
            out.append(f"{line[:space]}{{{label}}}{line[space:]}")
    return out
