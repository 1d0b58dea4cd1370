"""requests.csv keeps every prompt byte for byte (RFC 4180 quoting), and the
statistics use the same percentile method as the other tools."""

from __future__ import annotations

import statistics
from pathlib import Path

from sparkstack.bench.records import RequestRecord, read_requests_csv, write_requests_csv
from sparkstack.bench.stats import describe

AWKWARD = [
    'plain, with commas, and "double quotes" inside',
    "line one\nline two\r\nline three with a trailing newline\n",
    '"starts with a quote',
    ',,,\n\n"""',
    "unicode: café ✓ 東京, tab\there",
    "",
    "x" * 300_000,  # longer than csv's default 128 KiB field limit
]


def test_prompts_with_commas_quotes_and_newlines_read_back_unchanged(tmp_path: Path) -> None:
    records = [
        RequestRecord(
            point=f'c={i}, odd "label"',
            index=i,
            ok=i % 2 == 0,
            start_s=i * 0.5,
            prompt=text,
            output=text[::-1],
            error="" if i % 2 == 0 else 'bad, "x"\n',
            error_kind="" if i % 2 == 0 else "http_500",
            ttft_ms=None if i % 2 else 1.5,
            completion_tokens=i,
            chunk_gaps_ms=[0.25, 1.0 / 3] if i % 2 == 0 else [],
        )
        for i, text in enumerate(AWKWARD)
    ]
    path = tmp_path / "requests.csv"
    write_requests_csv(path, records)
    back = read_requests_csv(path)
    assert [r.prompt for r in back] == AWKWARD
    assert [r.output for r in back] == [t[::-1] for t in AWKWARD]
    assert [r.point for r in back] == [r.point for r in records]
    assert [r.error for r in back] == [r.error for r in records]
    assert [r.ok for r in back] == [r.ok for r in records]
    assert [r.ttft_ms for r in back] == [r.ttft_ms for r in records]
    assert [r.completion_tokens for r in back] == list(range(len(AWKWARD)))
    assert back[0].chunk_gaps_ms == [0.25, 0.333]
    raw = path.read_bytes()
    assert raw.count(b"\r\n") >= len(AWKWARD) + 1  # RFC 4180 record separator
    assert b'""double quotes""' in raw  # quotes doubled inside a quoted field


def test_percentiles_are_linear_interpolation() -> None:
    values = [float(v) for v in (7, 1, 3, 9, 4, 12, 5, 2, 8, 10)]
    stat = describe(values)
    assert stat is not None
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # Hyndman-Fan type 7
    assert stat.p50 == statistics.median(values)
    assert abs((stat.p90 or 0) - cuts[89]) < 1e-9
    assert abs((stat.p99 or 0) - cuts[98]) < 1e-9
    assert stat.mean == statistics.fmean(values) and stat.std == statistics.pstdev(values)
    assert stat.n == 10 and stat.min == 1 and stat.max == 12
