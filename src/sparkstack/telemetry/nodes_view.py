"""A cluster's nodes from the status document as text: the lines `sparkstack
status` prints and the table `sparkstack top` draws (pure: nodes in, text out)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from sparkstack.telemetry.document import NodeStatus

NODE_STATE_STYLE = {"alive": "green", "lost": "bold red", "absent": "red", "unknown": "dim"}


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:,.2f}"


def memory(node: NodeStatus) -> str:
    """``available/total GiB`` as the node itself reads it."""
    if node.memory_total_bytes is None:
        return "-"
    return f"{gib(node.memory_available_bytes)}/{gib(node.memory_total_bytes)} GiB"


def gpus(node: NodeStatus) -> str:
    return "-" if node.gpus is None else f"{node.gpus:g}"


def node_lines(nodes: list[NodeStatus]) -> list[str]:
    """One line per node: state, GPUs, memory available/total, models on it."""
    lines = [f"{'NODE':<12} {'ADDRESS':<16} {'STATE':<8} {'GPU':>4} {'MEMORY':>20}  MODELS"]
    for node in nodes:
        detail = f"  ({node.detail})" if node.detail else ""
        lines.append(
            f"{node.name:<12} {node.address:<16} {node.state:<8} {gpus(node):>4} "
            f"{memory(node):>20}  {', '.join(node.models) or '-'}{detail}"
        )
    return lines


def nodes_table(nodes: list[NodeStatus]) -> Table:
    """`top`'s nodes table (drawn only for a stack with ``cluster:``)."""
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    for column in ("NODE", "ADDRESS", "STATE", "GPU", "MEMORY avail/total", "MODELS"):
        table.add_column(column, no_wrap=column != "MODELS")
    for node in nodes:
        name = node.name + (" (head)" if node.head else "")
        state = Text(node.state, style=NODE_STATE_STYLE.get(node.state, ""))
        if node.detail and node.state != "alive":
            state.append(f" {node.detail}", style="dim")
        table.add_row(name, node.address, state, gpus(node), memory(node),
                      ", ".join(node.models) or "-")  # fmt: skip
    return table
