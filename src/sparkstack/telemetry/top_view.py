"""What ``sparkstack top`` draws from one status document (pure: document in,
rich renderable out): the memory bar with a segment per model plus other use,
free space and the host reserve; the models table; the cluster's nodes (a stack
with ``cluster:``); tokens/s sparklines; the event log; the key help and the
connection line."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sparkstack.telemetry.document import StatusDocument
from sparkstack.telemetry.nodes_view import nodes_table

COLORS = ("bright_blue", "yellow", "magenta", "green", "red", "cyan", "bright_white")
SPARKS = "▁▂▃▄▅▆▇█"
STATE_STYLE = {
    "ready": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "sleeping": "blue",
    "failed": "bold red",
    "stopped": "dim",
}
HELP = "↑/↓ select · l load · u unload · s sleep · w wake · q quit"


@dataclass
class View:
    url: str
    selected: int = 0
    message: str = ""
    unreachable_since: float | None = None
    problem: str = ""


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} GiB"


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def sparkline(values: list[float | None], width: int = 40) -> str:
    values = values[-width:]
    numbers = [v for v in values if v is not None]
    if not numbers:
        return ""
    top = max(numbers) or 1.0
    return "".join(
        " " if v is None else SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))]
        for v in values
    )


def memory_bar(doc: StatusDocument, width: int) -> Group:
    machine = doc.machine
    colors = {m.name: COLORS[i % len(COLORS)] for i, m in enumerate(doc.models)}
    segments = [(m.name, m.held_bytes, colors[m.name]) for m in doc.models if m.held_bytes > 0]
    used = sum(size for _, size, _ in segments)
    if machine.total_bytes:
        available = machine.available_bytes or 0
        reserve = machine.host_reserve_bytes or 0
        other = max(0, machine.total_bytes - available - used)
        segments += [
            ("other use", other, "grey50"),
            ("free", max(0, available - reserve), "grey23"),
            ("host reserve", min(reserve, available or reserve), "dark_orange3"),
        ]
    total = sum(size for _, size, _ in segments) or 1
    cells = [max(1, round(size / total * width)) if size else 0 for _, size, _ in segments]
    if cells and sum(cells) > width:  # the 1-cell minimums overflowed: trim the widest
        widest = cells.index(max(cells))
        cells[widest] = max(1, cells[widest] - (sum(cells) - width))
    bar, legend = Text(), Text()
    for (name, size, color), count in zip(segments, cells, strict=True):
        bar.append("█" * count, style=color)
        legend.append("■ ", style=color)
        legend.append(f"{name} {gib(size)}   ")
    return Group(bar, legend)


def models_table(doc: StatusDocument, selected: int) -> Table:
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    name_width = max([len(m.name) for m in doc.models] + [5]) + 2
    table.add_column("MODEL", no_wrap=True, min_width=name_width)
    table.add_column("ENGINE", no_wrap=True, min_width=8)
    table.add_column("STATE", no_wrap=True, min_width=8)
    for column in (
        "PID",
        "PLANNED",
        "MEASURED",
        "KV",
        "RUN/WAIT",
        "PROMPT t/s",
        "GEN t/s",
        "TTFT p50/p95",
        "ITL p50/p95",
        "REQ/s",
        "ERR",
    ):
        table.add_column(column, no_wrap=True)
    for index, m in enumerate(doc.models):
        kv = "-" if m.kv_cache_usage is None else f"{100 * m.kv_cache_usage:.0f}%"
        table.add_row(
            ("▶ " if index == selected else "  ") + m.name,
            m.engine,
            Text(m.state, style=STATE_STYLE.get(m.state, "")),
            str(m.pid or "-"),
            gib(m.planned_bytes),
            gib(m.measured_bytes),
            kv,
            f"{m.running}/{m.waiting}",
            num(m.prompt_tok_s),
            num(m.generation_tok_s),
            f"{num(m.ttft_p50_ms, 0)}/{num(m.ttft_p95_ms, 0)} ms",
            f"{num(m.itl_p50_ms, 0)}/{num(m.itl_p95_ms, 0)} ms",
            num(m.requests_per_s, 2),
            str(m.errors_last_minute),
        )
    return table


def render(doc: StatusDocument | None, view: View, width: int) -> RenderableType:
    head = Text(f"sparkstack top  {view.url}", style="bold")
    if doc is not None:
        m = doc.machine
        head.append(
            f"   {m.name or ''} {m.device or ''}{' unified' if m.unified else ''}  "
            f"total {gib(m.total_bytes)}  available {gib(m.available_bytes)}  "
            f"watchdog {m.watchdog.state}",
            style="",
        )
    parts: list[RenderableType] = [head]
    if view.unreachable_since is not None:
        last = f"; last picture from {clock(doc.time)}" if doc else ""
        parts.append(
            Text(
                f"unreachable since {clock(view.unreachable_since)}{last} ({view.problem})",
                style="bold red",
            )
        )
    elif view.problem:
        parts.append(Text(view.problem, style="bold red"))
    if view.message:
        parts.append(Text(view.message, style="bold"))
    if doc is None:
        parts.append(Text("waiting for the first status ..."))
        return Group(*parts)
    parts += [Text("memory", style="bold"), memory_bar(doc, max(10, width - 2)), Text("")]
    parts += [models_table(doc, view.selected), Text("")]
    if doc.nodes:
        parts += [Text("cluster nodes", style="bold"), nodes_table(doc.nodes), Text("")]
    parts.append(Text("generation tokens/s, last minute", style="bold"))
    for model in doc.models:
        line = sparkline(model.generation_history)
        parts.append(
            Text(f"{model.name:<16} ")
            + Text(line or "(no token counters from this engine)", style="cyan" if line else "dim")
        )
    parts += [Text(""), Text(HELP, style="dim"), Text(""), Text("events", style="bold")]
    for event in doc.events[-8:]:
        detail = f" - {event.detail}" if event.detail else ""
        parts.append(Text(f"{clock(event.time)} {event.model} {event.event}{detail}"))
    return Group(*parts)
