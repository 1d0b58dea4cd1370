"""What a model's queue costs a request when there is no contention: the fast
path (finding the model's queue, ``ModelQueue.take`` and ``release``) against the per-model check it
replaced (a dict lookup, a compare and two dict updates in ``Limiter``), each
timed over a million take/release pairs, best of several repeats; set beside
the gateway's own time per forwarded request from gateway_overhead.json.

usage: python -m benchmarks.queue_fast_path [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

from sparkstack.engines.registry import get_engine
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.model_queue import ModelQueues
from sparkstack.stack import load_stack_text
from sparkstack.supervisor.runtime import ModelRuntime

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = 1_000_000
REPEATS = 7


class OldPerModelCheck:
    """The per-model part of ``Limiter.admit``/``release`` before the queues."""

    def __init__(self) -> None:
        self.per_model = {"m": 512}
        self._per_model: dict[str, int] = {}

    def admit(self, model: str) -> None:
        cap = self.per_model.get(model)
        held = self._per_model.get(model, 0)
        if cap is not None and held >= cap:
            raise RuntimeError("model_overloaded")
        self._per_model[model] = held + 1

    def release(self, model: str) -> None:
        self._per_model[model] -= 1


def new_queues() -> tuple[ModelQueues, ModelRuntime]:
    stack = load_stack_text("models:\n  m: {engine: external, url: 'http://127.0.0.1:9'}\n", "b")
    runtime = ModelRuntime(spec=stack.models["m"], adapter=get_engine("external"))
    return ModelQueues({"m": runtime}, 1024, GatewayMetrics()), runtime


def per_pair_ns(statement: str, namespace: dict[str, object]) -> float:
    times = timeit.repeat(statement, globals=namespace, number=PAIRS, repeat=REPEATS)
    return min(times) / PAIRS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "queue_fast_path.json")
    args = parser.parse_args()
    (queues, runtime), old = new_queues(), OldPerModelCheck()
    new_ns = per_pair_ns("q = qs.get(rt); q.take(); q.release(0.01)", {"qs": queues, "rt": runtime})
    old_ns = per_pair_ns("o.admit('m'); o.release('m')", {"o": old})
    overhead = json.loads((RESULTS / "gateway_overhead.json").read_text())
    rps = overhead["summary"]["gateway/plain"]["rps_c16"]
    request_us = 1e6 / rps
    result = {
        "pairs_per_repeat": PAIRS,
        "repeats_best_of": REPEATS,
        "queue_take_release_ns": round(new_ns, 1),
        "old_per_model_check_ns": round(old_ns, 1),
        "difference_ns": round(new_ns - old_ns, 1),
        "gateway_us_per_request_c16": round(request_us, 1),
        "share_of_request_percent": round(new_ns / 1000 / request_us * 100, 4),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
