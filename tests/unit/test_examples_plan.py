"""The seeds' stacks in examples/ planned for a DGX Spark (issue 3, points 3-4):
which fit, which do not and why, and the stable --json schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import StackPlan, build_plan
from sparkstack.stack import load_stack
from tests.support import REPO

EXAMPLES = REPO / "examples"
GIB = 2**30


def plan_of(name: str) -> StackPlan:
    return build_plan(load_stack(EXAMPLES / name), inspect=partial(inspect_source, offline=True))


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_gpt_oss_pair_fits_with_eager_mode() -> None:
    plan = plan_of("seed000-gpt-oss-pair.yaml")
    assert plan.fits and plan.start_order == ["brain", "sprinter"]
    brain = plan.model("brain")
    # per request at 65536: 4096 full blocks + cdiv(127 + 2048, 16) + 1 = 137 sliding
    # blocks; a block spans 18 layers x 16 tokens x 8 heads x 128 x 2 B = 589,824 B
    assert brain.kv_bytes == 4 * (4096 + 137) * 589_824 == 9_986_899_968
    assert brain.kv_tokens == 4 * 65_536
    assert brain.spike_bytes == 0
    assert "--enforce-eager" in brain.engine_args
    args = dict(zip(brain.engine_args[::2], brain.engine_args[1::2], strict=False))
    assert brain.engine_args[brain.engine_args.index("--kv-cache-memory-bytes") + 1] == str(
        brain.kv_bytes
    )
    assert args["--max-model-len"] == "65536" and args["--max-num-seqs"] == "4"
    utilization = float(brain.engine_args[brain.engine_args.index("--gpu-memory-utilization") + 1])
    assert utilization * plan.machine.total_bytes >= brain.total_bytes
    assert any("MXFP4 has no native kernel on sm_121" in w for w in brain.warnings)
    assert brain.decode_ceiling_tok_s is not None and 40 < brain.decode_ceiling_tok_s < 60


def test_overcommitted_pair_does_not_fit_and_says_why() -> None:
    plan = plan_of("seed000-gpt-oss-pair-overcommitted.yaml")
    assert not plan.fits
    assert plan.overflow_bytes == plan.peak_bytes - plan.machine.budget_bytes > 90 * GIB
    # on unified memory the CUDA-graph/compile spike is counted (seed 002, wall 4)
    assert plan.model("brain").spike_bytes == int(0.6 * plan.model("brain").weights_bytes)
    text = "\n".join(plan.suggestions)
    assert "models.brain.enforce_eager: true" in text
    assert "models.sprinter.kv_cache_dtype: fp8" in text
    assert "models.brain.context: 65536 (from 131072)" in text
    assert "policy: on_demand" in text


def test_qwen36_fp8_fits_with_cuda_graphs() -> None:
    plan = plan_of("seed002-qwen36-35b-fp8.yaml")
    qwen = plan.model("qwen36")
    assert plan.fits and qwen.spike_bytes > 0
    assert flag(qwen.engine_args, "--kv-cache-dtype") == "fp8"
    assert qwen.kv_bytes_per_token == 10 * 2 * 512 * 1  # 10 attention layers, fp8


def test_nemotron_recipe_fits() -> None:
    plan = plan_of("seed001-nemotron-super.yaml")
    assert plan.fits
    assert plan.model("nemotron-3-super").kv_tokens == 4 * 131_072


def test_235b_on_one_spark_does_not_fit() -> None:
    plan = plan_of("seed003-qwen3-235b-one-spark.yaml")
    assert not plan.fits
    assert any("weights alone" in s and "two machines" in s for s in plan.suggestions)


def test_plan_json_schema_is_stable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "plan", str(EXAMPLES / "seed000-gpt-oss-pair.yaml"),
         "--json", "--offline"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert {"budget_bytes", "total_bytes", "reserve_bytes"} <= set(data["machine"])
    for model in data["models"]:
        assert {
            "weights_bytes", "kv_bytes_per_token", "kv_tokens", "overhead_bytes",
            "spike_bytes", "total_bytes", "engine_args",
        } <= set(model)  # fmt: skip
        assert model["total_bytes"] == (
            model["weights_bytes"] + model["kv_bytes"] + model["overhead_bytes"]
        )


@pytest.mark.parametrize(
    ("name", "code"),
    [("seed000-gpt-oss-pair.yaml", 0), ("seed003-qwen3-235b-one-spark.yaml", 3)],
)
def test_plan_exit_codes_and_text(name: str, code: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "plan", str(EXAMPLES / name), "--offline",
         "--explain"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert "budget" in result.stdout and "start order:" in result.stdout
    assert ("DOES NOT FIT" in result.stdout) == bool(code)


def test_up_refuses_a_stack_that_does_not_fit(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "up",
         str(EXAMPLES / "seed003-qwen3-235b-one-spark.yaml")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SPARKSTACK_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 3  # does not fit
    assert "does not fit this machine" in result.stderr
    assert "nothing was started" in result.stderr
    assert not (tmp_path / "logs").exists()
