"""Reads what other tools wrote, so their users get the plots and comparisons
those tools failed to make: aiperf's ``profile_export_aiperf.json`` / ``.csv``,
genai-perf's ``profile_export_genai_perf.json`` / ``.csv`` (the two-section CSV
with quoted ``"1,234.56"`` numbers), and sparkstack run directories. A folder
holding several exports (a sweep, one sub-folder per concurrency) becomes one
run with a point per export, ordered by concurrency."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sparkstack.bench.errors import BenchDataError
from sparkstack.bench.options import BenchOptionError
from sparkstack.bench.records import RequestRecord, read_requests_csv
from sparkstack.bench.stats import Stat
from sparkstack.bench.summary import READABLE_SCHEMAS, PointSummary, RunSummary

_EXPORTS = (
    "profile_export_aiperf.json",
    "profile_export_genai_perf.json",
    "profile_export_aiperf.csv",
    "profile_export_genai_perf.csv",
)
# their metric tag -> ours (same definitions; see DEFINITIONS in summary.py)
_METRICS = {
    "time_to_first_token": "ttft_ms",
    "inter_token_latency": "itl_ms",
    "request_latency": "e2e_ms",
    "inter_chunk_latency": "chunk_gap_ms",
    "e2e_output_token_throughput": "output_tok_s",
    "output_token_throughput_per_user": "decode_tok_s",
    "prefill_throughput_per_user": "prefill_tok_s",
    "input_sequence_length": "prompt_tokens",
    "output_sequence_length": "completion_tokens",
}
_THROUGHPUTS = {
    "request_throughput": "request_throughput",
    "output_token_throughput": "output_token_throughput",
    "input_token_throughput": "input_token_throughput",
    "total_token_throughput": "total_token_throughput",
}
_CONCURRENCY_IN_NAME = re.compile(r"(?:^|[^a-z])c(?:oncurrency)?[_-]?(\d+)(?:$|[^0-9])", re.I)


def _tag(name: str) -> str:
    """``Time To First Token (ms)`` -> ``time_to_first_token``."""
    name = re.sub(r"\([^)]*\)", "", name).strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _stat(values: dict[str, float | None]) -> Stat | None:
    mean = values.get("avg", values.get("mean"))
    if mean is None:
        return None
    count = values.get("count")
    return Stat(
        n=int(count or 0),
        mean=mean,
        std=values.get("std"),
        min=values.get("min"),
        max=values.get("max"),
        p50=values.get("p50"),
        p90=values.get("p90"),
        p95=values.get("p95"),
        p99=values.get("p99"),
    )


def _scalar(metrics: dict[str, dict[str, float | None]], tag: str) -> float | None:
    """A single-valued metric: ``avg`` in JSON exports, ``Value`` in the CSV's second table."""
    entry = metrics.get(tag, {})
    return entry.get("avg") if entry.get("avg") is not None else entry.get("value")


def _point_from_metrics(label: str, metrics: dict[str, dict[str, float | None]]) -> PointSummary:
    point = PointSummary(label=label)
    for theirs, ours in _METRICS.items():
        if theirs in metrics and (stat := _stat(metrics[theirs])) is not None:
            point.metrics[ours] = stat
    for theirs, ours in _THROUGHPUTS.items():
        value = _scalar(metrics, theirs)
        if value is not None:
            setattr(point, ours, value)
    point.duration_s = _scalar(metrics, "benchmark_duration") or 0.0
    point.requests_sent = int(_scalar(metrics, "request_count") or 0)
    rate = _scalar(metrics, "request_error_rate") or 0.0
    point.requests_failed = round(point.requests_sent * rate / 100)
    point.requests_ok = point.requests_sent - point.requests_failed
    return point


def _concurrency(data: dict[str, Any], path: Path) -> int | None:
    config = data.get("input_config") or {}
    for phase in config.get("phases") or []:  # aiperf >= 0.10
        if phase.get("kind") == "profiling" and phase.get("concurrency"):
            return int(phase["concurrency"])
    for section in ("loadgen", "perf_analyzer"):  # older aiperf, genai-perf
        value = (config.get(section) or {}).get("concurrency")
        if isinstance(value, int):
            return value
        if isinstance(value, dict) and isinstance(value.get("value"), int):
            return int(value["value"])
    if isinstance(config.get("concurrency"), int):
        return int(config["concurrency"])
    return _concurrency_from_path(path)


def _concurrency_from_path(path: Path) -> int | None:
    for name in (path.parent.name, path.stem):
        match = _CONCURRENCY_IN_NAME.search(name)
        if match:
            return int(match.group(1))
    return None


def _read_json_export(path: Path) -> tuple[PointSummary, str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchDataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "is the export complete?"
        ) from None
    if not isinstance(data, dict):
        raise BenchDataError(f"{path}: the export is a {type(data).__name__}, not a JSON object")
    metrics = {k: v for k, v in data.items() if isinstance(v, dict) and "unit" in v}
    if isinstance(data.get("records"), dict):  # older aiperf: metrics under "records"
        metrics.update({k: v for k, v in data["records"].items() if isinstance(v, dict)})
    tool = "aiperf" if "aiperf" in path.name or "aiperf_version" in data else "genai-perf"
    point = _point_from_metrics(path.parent.name, metrics)
    point.concurrency = _concurrency(data, path)
    return point, tool, data


def _read_csv_export(path: Path) -> tuple[PointSummary, str, dict[str, Any]]:
    metrics: dict[str, dict[str, float | None]] = {}
    header: list[str] | None = None
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.reader(source):
            if not any(cell.strip() for cell in row):
                header = None
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                continue
            if header[0] != "metric":
                continue  # GPU telemetry and other sections
            values = {key: _number(cell) for key, cell in zip(header[1:], row[1:], strict=False)}
            metrics[_tag(row[0])] = values
    if not metrics:
        raise BenchOptionError(
            f"{path}: no 'Metric,...' table found; is it a genai-perf or aiperf export?"
        )
    tool = "aiperf" if "aiperf" in path.name else "genai-perf"
    point = _point_from_metrics(path.parent.name, metrics)
    point.concurrency = _concurrency_from_path(path)
    return point, tool, {}


def _read_export(file: Path) -> tuple[PointSummary, str, dict[str, Any]]:
    """One export; whatever is malformed in it becomes one BenchDataError line."""
    reader = _read_json_export if file.suffix == ".json" else _read_csv_export
    try:
        return reader(file)
    except (BenchDataError, BenchOptionError):
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BenchDataError(
            f"{file}: a metric is malformed ({where}: {first['msg']}); is it an aiperf or "
            "genai-perf export?"
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchDataError(f"{file}: cannot read it ({exc})") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BenchDataError(
            f"{file}: unexpected content ({type(exc).__name__}: {exc}); is it an aiperf or "
            "genai-perf export?"
        ) from None


def _export_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found: list[Path] = []
    for name in _EXPORTS:
        found += sorted(path.rglob(name))
    # one export per folder: the JSON when both the JSON and the CSV are there
    by_folder: dict[Path, Path] = {}
    for file in found:
        by_folder.setdefault(file.parent, file)
    return list(by_folder.values())


def load_run(path: Path, label: str | None = None) -> tuple[RunSummary, list[RequestRecord]]:
    """A run from a sparkstack run folder, an aiperf/genai-perf export, or a folder
    of exports; with its per-request rows when it has them."""
    if (path / "summary.json").is_file() or path.name == "summary.json":
        folder = path if path.is_dir() else path.parent
        run = RunSummary.read(folder / "summary.json")
        if run.schema_ not in READABLE_SCHEMAS:
            raise BenchDataError(
                f"{folder}/summary.json has schema {run.schema_!r}; this sparkstack reads "
                f"{', '.join(READABLE_SCHEMAS)} (a newer sparkstack wrote it?)"
            )
        rows = folder / "requests.csv"
        run.label = label or run.label
        return run, read_requests_csv(rows) if rows.is_file() else []
    if not path.exists():
        raise BenchOptionError(f"{path}: no such file or folder")
    files = _export_files(path)
    if not files:
        raise BenchOptionError(
            f"{path}: no summary.json and no {', '.join(_EXPORTS)} in it; "
            "give a sparkstack run folder or an aiperf/genai-perf export"
        )
    points: list[PointSummary] = []
    tools: set[str] = set()
    model = ""
    for file in files:
        point, tool, data = _read_export(file)
        tools.add(tool)
        model = model or _model_name(data)
        if point.concurrency is not None:
            point.label = f"c={point.concurrency}"
        points.append(point)
    points.sort(key=lambda p: (p.concurrency is None, p.concurrency or 0, p.label))
    run = RunSummary(
        tool="/".join(sorted(tools)),
        label=label or path.name,
        model=model,
        url=str(path),
        points=points,
    )
    return run, []


def _model_name(data: dict[str, Any]) -> str:
    config = data.get("input_config") or {}
    items = (config.get("models") or {}).get("items") or []
    if items and isinstance(items[0], dict):
        return str(items[0].get("name", ""))
    names = config.get("model_names") or []
    return str(names[0]) if names else ""
