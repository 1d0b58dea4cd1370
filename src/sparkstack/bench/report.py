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
    parts.append(_checks_section(run))
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


def _ci(point: PointSummary, metric: str, stat: str) -> str:
    found = point.metrics.get(metric)
    if found is None or found.get(stat) is None:
        return "–"
    text = _num(found.get(stat))
    interval = (found.ci95 or {}).get(stat)
    if interval:
        text += f" [{_num(interval[0])}, {_num(interval[1])}]"
    if stat == "p99" and found.p99_low_n:
        text += " (n<100)"
    return text


def _checks_section(run: RunSummary) -> str:
    """Client calibration, validity per point, intervals, steady state, the
    client/engine split, compat numbers and the sweep's knee."""
    if run.tool != "sparkstack":
        return ""
    parts: list[str] = []
    cal = run.calibration
    if cal is not None:
        parts.append(
            f"<h3>Client calibration (null server, same loop)</h3><p>{cal.requests_per_s:,.0f} "
            f"requests/s, {cal.events_per_s:,.0f} SSE events/s, {cal.parse_us_per_event:.1f} µs "
            f"to parse an event, timer jitter p50 {cal.timer_jitter_ms_p50:.2f} ms / p99 "
            f"{cal.timer_jitter_ms_p99:.2f} ms.</p>"
        )
    rows = []
    for p in run.points:
        c = p.client
        rows.append(
            [
                p.label,
                "valid" if p.valid else "INVALID",
                "–" if c is None or c.client_share is None else f"{100 * c.client_share:.1f}%",
                _num(c.loop_lag_ms_p99) if c else "–",
                _num(c.client_lag_ms_p99) if c else "–",
                "; ".join(c.reasons) if c else "",
            ]
        )
    parts.append(
        "<h3>Run validity: did the client keep up?</h3>"
        + html_table(
            [
                "point",
                "verdict",
                "client ceiling used",
                "loop lag p99 ms",
                "send lag p99 ms",
                "reason",
            ],
            rows,
        )
    )
    checks = [
        [p.label, c.name, "ok" if c.ok else "check", c.detail]
        for p in run.points
        for c in p.validity
    ]
    if checks:
        parts.append(
            "<h3>Run validity: the measurement</h3>"
            + html_table(["point", "check", "", "detail"], checks)
        )
    ci_rows = [[p.label, *(_ci(p, m, s) for m, s in _CI_CELLS)] for p in run.points]
    parts.append(
        "<h3>95% bootstrap intervals (this run)</h3>"
        + html_table(["point", *(f"{m} {s}" for m, s in _CI_CELLS)], ci_rows)
    )
    steady = [
        [
            p.label,
            f"{p.steady.start_s:.2f}–{p.steady.end_s:.2f} s",
            str(p.steady.requests),
            _num(p.steady.output_token_throughput),
            _num(p.output_token_throughput),
            _num(p.steady.metrics["ttft_ms"].p50 if "ttft_ms" in p.steady.metrics else None),
            _num(p.stat("ttft_ms", "p50")),
        ]
        for p in run.points
        if p.steady
    ]
    if steady:
        parts.append(
            "<h3>Steady state (ramp-up and drain excluded) vs whole point</h3>"
            + html_table(
                [
                    "point",
                    "window",
                    "requests",
                    "out tok/s steady",
                    "out tok/s whole",
                    "TTFT p50 steady",
                    "TTFT p50 whole",
                ],
                steady,
            )
        )
    split = [
        [
            p.label,
            _num(p.split.client_ttft_ms_mean),
            _num(p.split.engine_ttft_ms_mean),
            _num(p.split.ttft_outside_engine_ms),
            _num(p.split.client_e2e_ms_mean),
            _num(p.split.engine_e2e_ms_mean),
            _num(p.split.e2e_outside_engine_ms),
        ]
        for p in run.points
        if p.split
    ]
    if split:
        parts.append(
            "<h3>Client vs engine (the engine's own histograms)</h3>"
            + html_table(
                [
                    "point",
                    "TTFT client",
                    "TTFT engine",
                    "outside engine",
                    "E2E client",
                    "E2E engine",
                    "outside engine",
                ],
                split,
            )
        )
    compat_rows = [
        [p.label, tool, name, _num(stat.mean), _num(stat.p50), _num(stat.p99)]
        for p in run.points
        for tool, metrics in p.compat.items()
        for name, stat in metrics.items()
    ]
    if compat_rows:
        parts.append(
            "<h3>The same requests under other tools' definitions</h3>"
            + html_table(["point", "tool", "their metric", "mean", "p50", "p99"], compat_rows)
        )
    if run.sweep is not None:
        sw = run.sweep
        parts.append(
            f"<h3>Sweep until saturation</h3><p>{html.escape(sw.stop_reason)}; knee at "
            f"<b>{html.escape(sw.knee_label or '–')}</b>"
            + (
                f"; best goodput {sw.best_goodput:.2f} req/s at "
                f"{html.escape(sw.best_goodput_label or '')}"
                if sw.best_goodput is not None
                else ""
            )
            + "</p>"
        )
    return "".join(parts)


_CI_CELLS = (
    ("ttft_ms", "p50"),
    ("ttft_ms", "p90"),
    ("ttft_ms", "p99"),
    ("itl_ms", "mean"),
    ("e2e_ms", "p90"),
    ("ttft_sched_ms", "p90"),
)


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
