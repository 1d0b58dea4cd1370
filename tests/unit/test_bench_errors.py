"""Damaged bench files give one line naming the file and what is wrong (a
BenchDataError), never a traceback: requests.csv, summary.json, aiperf and
genai-perf exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparkstack.bench.errors import BenchDataError
from sparkstack.bench.imports import load_run
from sparkstack.bench.records import RequestRecord, read_requests_csv, write_requests_csv
from sparkstack.bench.summary import RunSummary
from sparkstack.errors import SparkstackError
from tests.support import REPO


def good_csv(path: Path) -> None:
    write_requests_csv(path, [RequestRecord(point="c=1", index=0, ok=True, start_s=0.0)])


def test_requests_csv_with_a_bad_number_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    good_csv(path)
    head, row = path.read_text().splitlines()
    path.write_text(head + "\r\n" + row.replace("c=1,0,", "c=1,zero,", 1) + "\r\n")
    with pytest.raises(BenchDataError, match=r"requests.csv, line 2: column 'index' holds 'zero'"):
        read_requests_csv(path)


def test_requests_csv_short_row_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    good_csv(path)
    head = path.read_text().splitlines()[0]
    path.write_text(head + "\r\nc=1,0\r\n")
    with pytest.raises(BenchDataError, match="line 2: the row is short"):
        read_requests_csv(path)
    path.write_text("point,index\r\nc=1,0\r\n")
    with pytest.raises(BenchDataError, match="not a sparkstack requests.csv"):
        read_requests_csv(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BenchDataError, match="cannot read it"):
        read_requests_csv(path)


def test_old_requests_csv_without_the_new_columns_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    good_csv(path)
    lines = path.read_text().splitlines()
    names = lines[0].split(",")
    keep = [i for i, n in enumerate(names) if n not in ("ttft_sched_ms", "client_lag_ms")]
    path.write_text("\r\n".join(",".join(line.split(",")[i] for i in keep) for line in lines))
    (row,) = read_requests_csv(path)
    assert row.ttft_sched_ms is None and row.client_lag_ms == 0.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", r"not a sparkstack summary.json \(\(top level\)"),
        ('{"schema": "sparkstack.bench/v1", "points": [{"label": 3}]}', r"points.0.label"),
        ('{"schema": "sparkstack.bench/v1", "seed": "x"}', r"seed: Input should be"),
    ],
)
def test_summary_json_damage(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(BenchDataError, match=match):
        RunSummary.read(tmp_path / "summary.json")


def test_newer_schema_is_refused_and_v1_still_reads(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"schema": "sparkstack.bench/v9"}')
    with pytest.raises(BenchDataError, match="has schema 'sparkstack.bench/v9'"):
        load_run(tmp_path)
    (tmp_path / "summary.json").write_text('{"schema": "sparkstack.bench/v1", "label": "old"}')
    run, rows = load_run(tmp_path)
    assert run.label == "old" and rows == []


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        (
            "profile_export_aiperf.json",
            '{"time_to_first_token": {"unit": "ms", "avg": "x"',
            "line 1",
        ),
        ("profile_export_aiperf.json", "[1, 2]", "is a list, not a JSON object"),
        (
            "profile_export_aiperf.json",
            '{"time_to_first_token": {"unit": "ms", "avg": "fast"}}',
            "a metric is malformed",
        ),
        (
            "profile_export_genai_perf.json",
            '{"input_config": {"phases": [{"kind": "profiling", "concurrency": "lots"}]}}',
            "unexpected content",
        ),
        ("profile_export_genai_perf.csv", "Metric,avg\n", "no 'Metric,...' table"),
        ("profile_export_aiperf.csv", b"\xff\xfe\x00", "cannot read it"),
    ],
)
def test_damaged_exports(tmp_path: Path, name: str, text: str | bytes, match: str) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(SparkstackError, match=match):
        load_run(path)


def test_the_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"schema": "sparkstack.bench/v1"}))
    (run / "requests.csv").write_text("point,index\r\nx,1\r\n")
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "bench", "plot", str(run),
         "--out", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "requests.csv: not a sparkstack requests.csv" in result.stderr
