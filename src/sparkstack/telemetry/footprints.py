"""``sparkstack footprints``: the rows the supervisor appended to
``footprints.csv`` after each warm-up (measured memory and the engine's own KV
size beside the plan's prediction), as a table or as the CSV itself."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, fields
from pathlib import Path

from sparkstack.errors import TelemetryError
from sparkstack.supervisor.footprints import Footprint


def _int(raw: str | None) -> int | None:
    return int(raw) if raw else None


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None


def read_footprints(path: Path, model: str | None = None) -> list[Footprint]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise TelemetryError(
            f"no footprints recorded yet ({path} does not exist); `sparkstack up` appends a "
            "row after each model's warm-up (SPARKSTACK_STATE_DIR sets the folder)"
        ) from exc
    out = [
        Footprint(
            time=row["time"],
            model=row["model"],
            engine=row["engine"],
            planned_total_bytes=_int(row["planned_total_bytes"]) or 0,
            planned_kv_tokens=_int(row["planned_kv_tokens"]) or 0,
            engine_kv_tokens=_int(row.get("engine_kv_tokens")),
            rss_bytes=_int(row["rss_bytes"]) or 0,
            gpu_bytes=_int(row.get("gpu_bytes")),
            ready_seconds=_float(row.get("ready_seconds")),
            warmup_seconds=_float(row.get("warmup_seconds")),
        )
        for row in rows
    ]
    return [r for r in out if model is None or r.model == model]


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def _num(value: float | int | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if digits else str(value)


def render_table(rows: list[Footprint]) -> str:
    header = (
        f"{'TIME':<19} {'MODEL':<14} {'ENGINE':<9} {'PLANNED GiB':>11} {'RSS GiB':>8} "
        f"{'GPU GiB':>8} {'RSS/PLAN':>8} {'KV PLAN':>9} {'KV ENGINE':>9} {'READY s':>8} "
        f"{'WARM-UP s':>9}"
    )
    lines = [header]
    for r in rows:
        ratio = f"{r.rss_bytes / r.planned_total_bytes:.2f}" if r.planned_total_bytes else "-"
        lines.append(
            f"{r.time:<19} {r.model:<14} {r.engine:<9} {_gib(r.planned_total_bytes):>11} "
            f"{_gib(r.rss_bytes):>8} {_gib(r.gpu_bytes):>8} {ratio:>8} "
            f"{r.planned_kv_tokens:>9} {_num(r.engine_kv_tokens, 0):>9} "
            f"{_num(r.ready_seconds):>8} {_num(r.warmup_seconds):>9}"
        )
    return "\n".join(lines)


def write_csv(rows: list[Footprint]) -> str:
    """The rows as CSV (RFC 4180, the columns of footprints.csv)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(Footprint)])
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()
