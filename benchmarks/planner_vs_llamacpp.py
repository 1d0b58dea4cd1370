"""The planner against llama.cpp over the planner zoo (benchmarks/planner_vs_vllm.py
builds the models): each tiny HF model is converted to an F16 GGUF by llama.cpp's
own ``convert_hf_to_gguf.py`` (from the llama-cpp-python sdist, run in vLLM's
venv, which has torch and transformers), loaded by llama.cpp at two context
lengths, and its ``llama_kv_cache: size = X MiB (N cells ...)`` lines recorded
beside the plan in ``benchmarks/results/planner_vs_llamacpp.json``.

``--sdist DIR`` is the unpacked llama-cpp-python source distribution, e.g.
``pip download llama-cpp-python==0.3.36 --no-binary :all: --no-deps -d /tmp/x``.
Heavy: run it under the shared lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.planner_vs_vllm import ZOO, zoo_folder
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import build_plan
from sparkstack.settings import Settings
from sparkstack.stack.schema import Stack

RESULTS = Path(__file__).parent / "results" / "planner_vs_llamacpp.json"
PROBE = Path(__file__).parent / "llamacpp_kv_probe.py"
CONTEXTS = [1024, 4096]
KV_LINE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells")
WEIGHTS_LINE = re.compile(r"CPU_Mapped model buffer size =\s+([\d.]+) MiB")


def convert(name: str, sdist: Path) -> Path | str:
    """The GGUF of a zoo model, or why llama.cpp's converter refused it."""
    gguf = zoo_folder(name) / "model-f16.gguf"
    if gguf.exists():
        return gguf
    python = Settings.from_env().engines_dir / "vllm" / "bin" / "python"
    llama_cpp = sdist / "vendor" / "llama.cpp"
    done = subprocess.run(
        ["nice", "-n", "10", str(python), str(llama_cpp / "convert_hf_to_gguf.py"),
         str(zoo_folder(name)), "--outfile", str(gguf), "--outtype", "f16"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(llama_cpp / "gguf-py"), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    if done.returncode != 0 or not gguf.exists():
        return done.stderr.strip().splitlines()[-1][:400] if done.stderr.strip() else "failed"
    return gguf


def plan_for(gguf: Path, n_ctx: int) -> dict[str, Any]:
    stack = Stack.model_validate(
        {
            "machine": {"total_gib": 64, "device": "cpu"},
            "host_reserve_gib": 0,
            "models": {"m": {"engine": "llamacpp", "model": str(gguf), "context": n_ctx}},
        }
    )
    plan = build_plan(stack, inspect=inspect_source).model("m")
    return {"plan_kv_tokens": plan.kv_tokens, "plan_kv_mib": round(plan.kv_bytes / 2**20, 2),
            "plan_weight_bytes": plan.weights_bytes}  # fmt: skip


def measure(ggufs: dict[str, Path]) -> dict[str, dict[int, str]]:
    """llama.cpp's log per model and context, from one process."""
    python = Settings.from_env().engines_dir / "llamacpp" / "bin" / "python"
    job = {"models": [{"name": n, "gguf": str(g)} for n, g in ggufs.items()],
           "contexts": CONTEXTS}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    try:
        done = subprocess.run(
            ["nice", "-n", "10", str(python), str(PROBE), handle.name],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    logs: dict[str, dict[int, str]] = {}
    for block in done.stderr.split("\nPROBE-START ")[1:]:
        head, _, body = block.partition("\n")
        name, n_ctx = head.split()
        logs.setdefault(name, {})[int(n_ctx)] = body.split("\nPROBE-END")[0]
    return logs


def compare(run: dict[str, Any], gguf: Path) -> None:
    """The plan beside llama.cpp's report for one run."""
    for key in ("plan_error", "plan_kv_tokens", "plan_kv_mib", "plan_weight_bytes"):
        run.pop(key, None)
    try:
        run.update(plan_for(gguf, run["context"]))
    except Exception as exc:  # noqa: BLE001  (a planner refusal is a result)
        run["plan_error"] = f"{type(exc).__name__}: {exc}"
    # llama.cpp prints each buffer (non-SWA, SWA) rounded to 0.01 MiB.
    tolerance = 0.005 * len(run["kv_lines"]) + 1e-9
    run["kv_exact"] = (
        run.get("plan_kv_tokens") == run["engine_kv_cells"]
        and run["engine_kv_mib"] is not None
        and abs(run.get("plan_kv_mib", -1) - run["engine_kv_mib"]) <= tolerance
    )


def replan() -> None:
    data = json.loads(RESULTS.read_text())
    for name, entry in data["architectures"].items():
        for run in entry.get("runs", []):
            compare(run, zoo_folder(name) / entry["gguf"])
    RESULTS.write_text(json.dumps(data, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--replan", action="store_true", help="recompute plans only")
    args = parser.parse_args()
    if args.replan:
        replan()
        return
    entries: dict[str, Any] = {}
    ggufs: dict[str, Path] = {}
    for name in ZOO:
        if not (zoo_folder(name) / "config.json").exists():
            continue
        found = convert(name, args.sdist)
        if isinstance(found, Path):
            ggufs[name] = found
        else:
            entries[name] = {"name": name, "refused": f"convert_hf_to_gguf.py: {found}"}
    logs = measure(ggufs)
    for name, gguf in ggufs.items():
        runs = []
        for n_ctx in CONTEXTS:
            log = logs.get(name, {}).get(n_ctx, "")
            kv = KV_LINE.findall(log)
            weights = WEIGHTS_LINE.search(log)
            run: dict[str, Any] = {
                "context": n_ctx,
                "kv_lines": [ln for ln in log.splitlines() if KV_LINE.search(ln)],
                "engine_kv_cells": int(kv[0][1]) if kv else None,
                "engine_kv_mib": round(sum(float(mib) for mib, _ in kv), 2) if kv else None,
                "load_line": weights.group(0) if weights else None,
                "refused": next((ln for ln in log.splitlines() if "PROBE-ERROR" in ln), None),
            }
            compare(run, gguf)
            if not kv:
                run["log_tail"] = [ln for ln in log.splitlines() if ln.strip()][-6:]
            runs.append(run)
        entries[name] = {"name": name, "gguf": gguf.name, "runs": runs}
    RESULTS.write_text(json.dumps({"contexts": CONTEXTS, "architectures": entries}, indent=1))
    for name, entry in entries.items():
        status = entry.get("refused") or ", ".join(
            f"{r['engine_kv_cells']}/{r.get('plan_kv_tokens')} "
            f"{r['engine_kv_mib']}/{r.get('plan_kv_mib')} MiB"
            for r in entry["runs"]
        )
        print(f"{name:18} {status[:160]}")


if __name__ == "__main__":
    main()
