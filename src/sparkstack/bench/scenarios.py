"""Named scenarios: the tests our users ran by hand, as lists of load points.

* ``interactive`` (seed 004, test 1): one user, ~105-token prompt, 256 tokens out,
  4 measured requests after a warm-up.
* ``batch-scaling`` (seed 004, test 2): the same request at 1, 2, 4, 8, 16
  concurrent users (two rounds each).
* ``long-context`` (seed 004, test 3): prefill and decode at 5k, 20k and 40k prompt
  tokens, 128 tokens out.
* ``five-scenario`` (seed 001, table 2): judge call, medium/long prompt with
  short/long generation; median of three after one warm-up.
"""

from __future__ import annotations

from sparkstack.bench.options import BenchOptionError, LengthDist, Point


def _interactive() -> list[Point]:
    return [Point("interactive", LengthDist(105), LengthDist(256), concurrency=1, requests=4)]


def _batch_scaling() -> list[Point]:
    return [
        Point(f"batch {n}", LengthDist(105), LengthDist(256), concurrency=n, requests=2 * n)
        for n in (1, 2, 4, 8, 16)
    ]


def _long_context() -> list[Point]:
    return [
        Point(
            f"context {name}",
            LengthDist(tokens),
            LengthDist(128),
            concurrency=1,
            requests=2,
            warmup=1 if i == 0 else 0,
        )
        for i, (name, tokens) in enumerate((("5k", 5000), ("20k", 20000), ("40k", 40000)))
    ]


def _five_scenario() -> list[Point]:
    rows = (
        ("judge call", 58, 2),
        ("medium prompt, short gen", 1834, 32),
        ("long prompt, short gen", 7234, 32),
        ("medium prompt, long gen", 1834, 108),
        ("long prompt, long gen", 7234, 124),
    )
    return [
        Point(
            label,
            LengthDist(prompt),
            LengthDist(gen),
            concurrency=1,
            requests=3,
            warmup=1 if i == 0 else 0,
        )
        for i, (label, prompt, gen) in enumerate(rows)
    ]


SCENARIOS = {
    "interactive": _interactive,
    "batch-scaling": _batch_scaling,
    "long-context": _long_context,
    "five-scenario": _five_scenario,
}


def scenario_points(name: str) -> list[Point]:
    if name not in SCENARIOS:
        raise BenchOptionError(
            f"--scenario {name!r} is not one we know: use one of {', '.join(SCENARIOS)}"
        )
    return SCENARIOS[name]()


def fit_context(points: list[Point], max_model_len: int | None) -> tuple[list[Point], list[str]]:
    """Cut prompts that cannot fit the model's context, and say so."""
    if not max_model_len:
        return points, []
    fitted: list[Point] = []
    notes: list[str] = []
    for point in points:
        room = max_model_len - point.output.mean - 32  # chat template and BOS
        if point.input.mean > room:
            cut = max(1, room)
            notes.append(
                f"{point.label}: prompt cut from {point.input.mean} to {cut} tokens to fit the "
                f"model's {max_model_len}-token context"
            )
            point = point.with_overrides(input=LengthDist(cut, 0))
        fitted.append(point)
    return fitted, notes
