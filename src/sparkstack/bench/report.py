"""A self-contained ``report.html`` (plots embedded as base64 PNG, no scripts, no
outside links) for one run or a comparison, written beside the PNGs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from sparkstack.bench.plots import PLOTS, write_plots
from sparkstack.bench.records import RequestRecord
from sparkstack.bench.summary import PointSummary, RunSummary

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%}.note{color:#8a4b00}code{background:#f3f3f3;padding:0 3px}"""

COLUMNS = (
    # (heading, PointSummary field or metric, stat: None for a plain field)
    ("ok/sent", None, None),
    ("req/s", "request_throughput", None),
    ("out tok/s", "output_token_throughput", None),
    ("TTFT mean", "ttft_ms", "mean"),
    ("TTFT p50", "ttft_ms", "p50"),
    ("TTFT p99", "ttft_ms", "p99"),
    ("ITL mean", "itl_ms", "mean"),
    ("ITL p99", "itl_ms", "p99"),
    ("E2E mean", "e2e_ms", "mean"),
    ("E2E p50", "e2e_ms", "p50"),
    ("E2E p99", "e2e_ms", "p99"),
    ("prefill tok/s p50", "prefill_tok_s", "p50"),
    ("decode tok/s p50", "decode_tok_s", "p50"),
    ("prompt tok p50", "prompt_tokens", "p50"),
    ("output tok p50", "completion_tokens", "p50"),
)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def cell(point: PointSummary, metric: str | None, stat: str | None) -> str:
    if metric is None:
        return f"{point.requests_ok}/{point.requests_sent}"
    if stat is None:
        return _num(float(getattr(point, metric)))
    return _num(point.stat(metric, stat))


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def text_table(rows: list[list[str]], left: int = 1) -> str:
    """``rows`` (the first is the header) as aligned text: the first ``left``
    columns flush left, the others flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def _run_section(run: RunSummary) -> str:
    parts = [
        f"<h2>{html.escape(run.label)}</h2><p>{html.escape(run.tool)} · model "
        f"<code>{html.escape(run.model)}</code> at <code>{html.escape(run.url)}</code> · "
        f"{html.escape(run.endpoint)} · {html.escape(run.created)}"
        + (f" · scenario <b>{html.escape(run.scenario)}</b>" if run.scenario else "")
        + (f"<br>tokenizer: {html.escape(run.tokenizer)}" if run.tokenizer else "")
        + (
            f" · length fields sent: {', '.join(run.fields_sent) or 'none'}"
            if run.tool == "sparkstack"
            else ""
        )
        + "</p>"
    ]
    rows = [[p.label, *(cell(p, m, s) for _, m, s in COLUMNS)] for p in run.points]
    parts.append(html_table(["point", *(c for c, _, _ in COLUMNS)], rows))
    servers = [(p.label, p.server) for p in run.points if p.server and p.server.samples]
    if run.gateway or servers:
        ceiling = run.decode_ceiling_tok_s
        parts.append(
            "<h3>Engine side (sparkstack gateway /metrics)</h3><p>Planner's decode "
            f"ceiling for one user: <b>{_num(ceiling)}</b> tokens/s (memory bandwidth / "
            "bytes read per token).</p>"
        )
        rows = []
        for p in run.points:
            decode = p.stat("decode_tok_s", "p50")
            share = f"{100 * decode / ceiling:.0f}%" if decode and ceiling else "–"
            s = p.server
            rows.append(
                [
                    p.label,
                    _num(decode),
                    share,
                    _num(s.kv_cache_usage_max * 100)
                    if s and s.kv_cache_usage_max is not None
                    else "–",
                    _num(s.requests_waiting_max) if s else "–",
                    _num(s.requests_running_max) if s else "–",
                    str(s.samples) if s else "0",
                ]
            )
        parts.append(
            html_table(
                [
                    "point",
                    "decode tok/s p50",
                    "of ceiling",
                    "KV cache max %",
                    "waiting max",
                    "running max",
                    "samples",
                ],
                rows,
            )
        )
    errors = [f"{p.label}: {e}" for p in run.points for e in p.error_examples]
    if errors:
        parts.append(
            "<h3>Errors (examples)</h3><ul>"
            + "".join(f"<li>{html.escape(e)}</li>" for e in errors)
            + "</ul>"
        )
    if run.warnings:
        parts.append(
            "<h3>Notes</h3><ul>"
            + "".join(f"<li class=note>{html.escape(w)}</li>" for w in run.warnings)
            + "</ul>"
        )
    return "".join(parts)


def write_report(
    folder: Path,
    runs: list[RunSummary],
    records: dict[str, list[RequestRecord]],
    ratio_table: str = "",
    title: str = "",
) -> Path:
    """Plots and report.html for ``runs`` (one run, or several being compared)."""
    images = write_plots(folder, runs, records)
    title = title or (
        runs[0].label if len(runs) == 1 else "Comparison: " + " vs ".join(r.label for r in runs)
    )
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    if ratio_table:
        parts.append(ratio_table)
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(PLOTS[image.name])}</h3>"
            f"<img alt='{html.escape(PLOTS[image.name])}' src='data:image/png;base64,{data}'>"
        )
    parts += [_run_section(run) for run in runs]
    definitions = runs[0].definitions
    parts.append(
        "<h3>Definitions</h3>"
        + html_table(["metric", "definition"], [[k, v] for k, v in definitions.items()])
    )
    parts.append("</body></html>")
    path = folder / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path
