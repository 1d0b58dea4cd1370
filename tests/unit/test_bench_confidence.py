"""Bootstrap intervals within one run (p99 flagged under 100 values) and the gate's
verdicts on synthetic samples: same distribution -> no detectable change, 20%
slower -> worse with an interval excluding 0, faster -> better."""

from __future__ import annotations

import random

from sparkstack.bench.gate import judge
from sparkstack.bench.stats import describe


def sample(n: int, scale: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [scale * (50 + rng.expovariate(1 / 10)) for _ in range(n)]


def test_intervals_hold_the_estimate_and_flag_a_thin_p99() -> None:
    stat = describe(sample(60, 1.0, 1), ci=True)
    assert stat is not None and stat.ci95 is not None and stat.p99_low_n is True
    for name in ("mean", "p50", "p90", "p99"):
        low, high = stat.ci95[name]
        assert low <= (stat.get(name) or 0) <= high
    big = describe(sample(400, 1.0, 2), ci=True)
    assert big is not None and big.p99_low_n is False and big.ci95 is not None
    assert big.ci95["p50"][1] - big.ci95["p50"][0] < stat.ci95["p50"][1] - stat.ci95["p50"][0]
    assert describe(sample(60, 1.0, 1)) is not None and describe([1.0], ci=True).ci95 is None  # type: ignore[union-attr]


def test_verdicts() -> None:
    base = sample(200, 1.0, 3)
    same = judge(base, sample(200, 1.0, 4), "ttft_ms", "p90", 0.0)
    assert same[3] == "no detectable change" and not same[4] and same[1] < 0 < same[2]
    slow = judge(base, sample(200, 1.2, 5), "ttft_ms", "p50", 0.05)
    assert slow[3] == "worse" and slow[4] and 0 < slow[1] < 0.2 < slow[2] + 0.05
    within = judge(base, sample(200, 1.2, 5), "ttft_ms", "p50", 0.5)
    assert within[3] == "worse" and not within[4]  # beyond 0 but within the allowed 50%
    faster = judge(base, sample(200, 0.8, 6), "ttft_ms", "mean", 0.0)
    assert faster[3] == "better" and not faster[4]
    # a tight but tiny shift stays under the 3% noise floor (run-to-run drift)
    steady = [100.0 + i % 7 for i in range(400)]
    drift = judge(steady, [v * 1.02 for v in steady], "ttft_ms", "mean", 0.0)
    assert drift[1] > 0 and drift[3] == "no detectable change" and not drift[4]
    strict = judge(steady, [v * 1.02 for v in steady], "ttft_ms", "mean", 0.0, noise_floor=0.0)
    assert strict[3] == "worse" and strict[4]
    throughput = judge(base, sample(200, 0.8, 6), "output_tok_s", "mean", 0.0)
    assert throughput[3] == "worse" and throughput[4]  # lower throughput is the bad side
