"""One measured request (`RequestRecord`) and the ``requests.csv`` file that holds
one row per request, quoted per RFC 4180 so prompts with commas, quotes and
newlines read back unchanged."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkstack.bench.errors import BenchDataError

# Python's csv module rejects fields over 128 KiB by default; long-context prompts
# are far bigger than that.
csv.field_size_limit(2**31 - 1)


@dataclass(slots=True)
class RequestRecord:
    """Timings in milliseconds from the moment the request was written (``t_send``)."""

    point: str
    index: int
    ok: bool
    start_s: float
    """Seconds from the start of the point to ``t_send``."""
    send_lag_ms: float = 0.0
    """``t_send`` minus the scheduled time (open-loop modes; 0 in closed loop)."""
    client_lag_ms: float = 0.0
    """How late the client itself was on the schedule (open loop), slot waits excluded."""
    http_status: int = 0
    error_kind: str = ""
    error: str = ""
    input_tokens_requested: int = 0
    output_tokens_requested: int = 0
    prompt_tokens: int | None = None
    """``usage.prompt_tokens`` (chat template included)."""
    completion_tokens: int | None = None
    """Output tokens: ``usage.completion_tokens``, else the token-bearing event count."""
    reasoning_tokens: int | None = None
    osl_source: str = ""
    """``usage`` or ``events`` (the server sent no usage)."""
    token_events: int = 0
    ttfc_ms: float | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    close_ms: float | None = None
    ttft_sched_ms: float | None = None
    """TTFT from the scheduled send time (coordinated-omission safe; = TTFT in closed loop)."""
    e2e_sched_ms: float | None = None
    lead_gap_ms: float | None = None
    """First choice chunk (a role chunk) to the first token, when that chunk bore none."""
    tail_gap_ms: float | None = None
    """Last token to the last choice chunk (a finish_reason chunk), when that bore none."""
    itl_ms: float | None = None
    tpot_ms: float | None = None
    output_tok_s: float | None = None
    prefill_tok_s: float | None = None
    chunk_gaps_ms: list[float] = field(default_factory=list)
    prompt: str = ""
    output: str = ""


_FIELDS = [f.name for f in dataclasses.fields(RequestRecord)]
_TYPES = {f.name: str(f.type) for f in dataclasses.fields(RequestRecord)}
_ADDED = {
    "client_lag_ms",
    "ttft_sched_ms",
    "e2e_sched_ms",
    "lead_gap_ms",
    "tail_gap_ms",
}
"""Columns newer than schema v1: files without them still read (defaults)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(f"{v:.3f}" for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse(name: str, text: str) -> Any:
    kind = _TYPES[name]
    if kind == "str":
        return text
    if kind == "bool":
        return text == "true"
    if kind == "list[float]":
        return [float(v) for v in text.split()]
    if text == "":
        return None
    return int(text) if "int" in kind else float(text)


def write_requests_csv(path: Path, records: list[RequestRecord]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
        writer.writerow(_FIELDS)
        for record in records:
            writer.writerow([_cell(getattr(record, name)) for name in _FIELDS])


def read_requests_csv(path: Path) -> list[RequestRecord]:
    try:
        with path.open(newline="", encoding="utf-8") as source:
            reader = csv.DictReader(source)
            columns = set(reader.fieldnames or [])
            missing = set(_FIELDS) - _ADDED - columns
            if missing:
                raise BenchDataError(
                    f"{path}: not a sparkstack requests.csv (missing columns: "
                    f"{', '.join(sorted(missing))})"
                )
            present = [n for n in _FIELDS if n in columns]
            return [_row(path, reader.line_num, row, present) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchDataError(f"{path}: cannot read it as CSV ({exc})") from exc


def _row(path: Path, line: int, row: dict[str, str | None], names: list[str]) -> RequestRecord:
    values: dict[str, Any] = {}
    for name in names:
        text = row.get(name)
        if text is None:
            raise BenchDataError(f"{path}, line {line}: the row is short (no {name!r} value)")
        try:
            values[name] = _parse(name, text)
        except ValueError:
            raise BenchDataError(
                f"{path}, line {line}: column {name!r} holds {text[:40]!r}, "
                f"not a {_TYPES[name].replace(' | None', '')}"
            ) from None
    return RequestRecord(**values)
