"""`up --dry-run`'s container commands for the seeds' stacks in examples/containers/,
compared field by field with the commands the seeds wrote by hand (issue 10,
must-show 2). Every difference must be one listed here with its reason; a new
one fails the test."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sparkstack.containers.dry_run import dry_run_commands
from sparkstack.machine import resolve_machine
from sparkstack.planner.plan import build_plan
from sparkstack.settings import Settings
from sparkstack.stack import load_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "containers"
VALUE_FLAGS = {"--name", "--label", "--network", "-p", "--gpus", "--device", "--ipc",
               "--shm-size", "--ulimit", "-v", "-e", "--entrypoint", "--restart"}  # fmt: skip

# The seeds' hand-written commands (shared/seeds), docker flags and engine flags.
SEEDS = {
    "seed001-nemotron-super": (  # seed 001, lines 63-76
        "docker run -d --name vllm --ipc=host --restart unless-stopped --gpus all "
        "-p 8000:8000 -e HF_TOKEN=$HF_TOKEN -v ~/.cache/huggingface:/root/.cache/huggingface "
        "vllm/vllm-openai:cu130-nightly vllm serve nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4 "
        "--served-model-name nemotron-3-super --trust-remote-code --max-model-len 131072 "
        "--gpu-memory-utilization 0.85 --max-num-seqs 4 --reasoning-parser nemotron_v3 "
        "--enable-auto-tool-choice --tool-call-parser qwen3_coder"
    ),
    "seed002-qwen36-35b-fp8": (  # seed 002, the compose service
        "docker run --gpus all --network host --ipc host --shm-size 16gb "
        "-e HF_TOKEN=${HF_TOKEN} -e VLLM_API_KEY=${VLLM_API_KEY} "
        "-v ~/.cache/huggingface:/root/.cache/huggingface nvcr.io/nvidia/vllm:26.05.post1-py3 "
        "vllm serve Qwen/Qwen3.6-35B-A3B-FP8 --host 0.0.0.0 --port 8000 "
        "--tensor-parallel-size 1 --gpu-memory-utilization 0.70 --max-model-len 32768 "
        "--kv-cache-dtype fp8 --max-num-batched-tokens 8192 --enable-prefix-caching "
        "--trust-remote-code --enable-auto-tool-choice --tool-call-parser qwen3_coder "
        "--reasoning-parser qwen3"
    ),
    "seed004-gpt-oss-120b": (  # seed 004, sections 1 and 3
        "docker run --gpus all -it --rm --network host --ipc=host --shm-size=16g "
        "--ulimit memlock=-1 --ulimit stack=67108864 "
        "-v ~/.cache/huggingface:/root/.cache/huggingface nvcr.io/nvidia/vllm:25.09-py3 "
        "vllm serve openai/gpt-oss-120b --host 0.0.0.0 --port 8000 --async-scheduling "
        "--trust-remote-code --tensor-parallel-size 1 --gpu-memory-utilization 0.7 "
        "--swap-space 32 --max-model-len 64000 --max-num-seqs 512 --gpu-memory-utilization 0.75"
    ),
    "seed000-trtllm-pair": (  # seed 000, the gpt-oss-120b launch script (brain)
        "docker run --gpus all nvcr.io/nvidia/tensorrt-llm/release:spark-single-gpu-dev "
        "trtllm-serve openai/gpt-oss-120b --host 0.0.0.0 --port 8356 --max_batch_size 32 "
        "--trust_remote_code --extra_llm_api_options /tmp/extra-llm-api-config-120b.yml"
    ),
}

MEMORY = "the planned memory flags replace the hand-picked fraction (fits next to the host reserve)"
EXPECTED: dict[str, dict[str, str]] = {
    "seed001-nemotron-super": {
        "-p": "host network: the engine listens on 127.0.0.1 only, clients go through the gateway",
        "-e": "secrets by name only (-e NAME): the value never appears in argv",
        "-v": "the HF cache is mounted only when it exists on the host (read-only once the "
        "model is in it); none on this test machine",
        "--restart": "sparkstack restarts crashed engines itself (restart policy, back-off)",
        "--ulimit": "NVIDIA's recommended memlock/stack ulimits (seed 004) are added",
        "--network": "host network (see -p)",
        "--name": "a per-stack, per-model name; labels let `down` find it",
        "--entrypoint": "the engine's program as the entrypoint: images differ in theirs",
        "--gpu-memory-utilization": MEMORY,
        "--kv-cache-memory-bytes": MEMORY,
        "--enforce-eager": "the example keeps the first-request spike off the host",
        "--host": "loopback only, behind the gateway",
        "--port": "a free port picked at start",
        "--model": "vLLM's --model instead of `vllm serve`'s positional model (same server)",
        "--middleware": "the engine key guard (mounted read-only): the key on every path, "
        "vLLM's own --api-key covers only /v1",
    },
}
EXPECTED["seed002-qwen36-35b-fp8"] = {
    **{k: v for k, v in EXPECTED["seed001-nemotron-super"].items()
       if k not in ("-p", "--restart", "--network", "--enforce-eager")},
    "--shm-size": "left out with --ipc host: the host's /dev/shm is shared (podman refuses both)",
    "--max-num-seqs": "the planned concurrency (8) is passed; vLLM's default was implicit",
    "--max-num-batched-tokens": "not set: the planner sizes activations for vLLM's default 2048",
    "--enable-prefix-caching": "vLLM's default already",
    "--tensor-parallel-size": "1 is vLLM's default",
    "--served-model-name": "the stack's model name (the seed served the repo id)",
}  # fmt: skip
EXPECTED["seed002-qwen36-35b-fp8"].pop("--port")  # the dry run shows port 8000 too
EXPECTED["seed004-gpt-oss-120b"] = {
    **EXPECTED["seed002-qwen36-35b-fp8"],
    "--ulimit": "same ulimits",
    "--max-num-seqs": "planned concurrency 8 instead of 512 (512 x 64000 tokens does not fit)",
    "--swap-space": "not set: CPU swap space is host memory on a unified machine",
    "--enable-auto-tool-choice": "the catalog recipe adds harmony tool calls (parser openai)",
    "--tool-call-parser": "the catalog recipe adds harmony tool calls (parser openai)",
    "-e": "TIKTOKEN_ENCODINGS_BASE from the recipe and the engine key, by name",
    "--enforce-eager": "the example keeps the first-request spike off the host",
}
for key in ("--max-num-batched-tokens", "--enable-prefix-caching"):
    EXPECTED["seed004-gpt-oss-120b"].pop(key)
EXPECTED["seed004-gpt-oss-120b"].pop("--ulimit")
EXPECTED["seed000-trtllm-pair"] = {
    "--name": "a per-stack, per-model name", "--network": "host network, engine on loopback",
    "--ipc": "--ipc host added (NCCL / torch shared memory, seeds 002/004)",
    "--ulimit": "NVIDIA's recommended ulimits (seed 004)",
    "-e": "the engine's environment by name (TIKTOKEN_ENCODINGS_BASE, allocator settings)",
    "-v": "the options YAML is mounted at its path",
    "--entrypoint": "the engine's program as the entrypoint",
    "--host": "loopback only", "--port": "a free port picked at start",
    "--extra_llm_api_options": "written from the plan (free_gpu_memory_fraction, max_tokens) "
                               "into the state folder instead of /tmp",
    "--max_seq_len": "the planned context is passed (the seed left it to the model config)",
    "model": "same model",
}  # fmt: skip
EXPECTED["seed000-trtllm-pair"].pop("model")


def split(command: list[str]) -> tuple[dict[str, list[str]], str, dict[str, str]]:
    """(container flags -> values, image, engine flags -> value) of a docker/podman command."""
    words = [w for w in command if w not in ("run", "create")]
    words = words[1:]
    flags: dict[str, list[str]] = {}
    i = 0
    while words[i].startswith("-"):
        name, eq, value = words[i].partition("=")
        if name in VALUE_FLAGS and not eq:
            value, i = words[i + 1], i + 1
        flags.setdefault(name, []).append(value)
        i += 1
    image, rest = words[i], words[i + 1 :]
    engine: dict[str, str] = {}
    for j, word in enumerate(rest):
        if word.startswith("--"):
            nxt = rest[j + 1] if j + 1 < len(rest) else ""
            engine[word] = "" if nxt.startswith("--") or not nxt else nxt
    return flags, image, engine


def differences(seed: list[str], ours: list[str]) -> set[str]:
    s_flags, s_image, s_engine = split(seed)
    o_flags, o_image, o_engine = split(ours)
    diff = {
        k
        for k in s_flags.keys() | o_flags.keys()
        if k not in ("-d", "-it", "--rm", "--label") and s_flags.get(k) != o_flags.get(k)
    }
    diff |= {k for k in s_engine.keys() | o_engine.keys() if s_engine.get(k) != o_engine.get(k)}
    if s_image != o_image:
        diff.add("image")
    return diff  # fmt: skip


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_dry_run_matches_the_seed_but_for_listed_reasons(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-hf-cache"))
    stack = load_stack(EXAMPLES / f"{name}.yaml")
    plan = build_plan(stack, resolve_machine("dgx-spark"))
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state")
    commands = dry_run_commands(stack, plan, settings, cuda=True)
    ours = next(iter(commands.values()))
    seed = shlex.split(SEEDS[name])
    found = differences(seed, ours)
    assert found == set(EXPECTED[name]), (
        f"unexplained: {sorted(found - set(EXPECTED[name]))}; "
        f"no longer different: {sorted(set(EXPECTED[name]) - found)}"
    )
    _, image, engine = split(ours)
    _, seed_image, seed_engine = split(seed)
    assert image == seed_image  # the recipe's image tag, exactly as the seed ran it
    for flag in ("--served-model-name", "--reasoning-parser", "--tool-call-parser",
                 "--max-model-len", "--kv-cache-dtype", "--max_batch_size"):  # fmt: skip
        if flag in seed_engine and flag not in EXPECTED[name]:
            assert engine[flag] == seed_engine[flag], flag
