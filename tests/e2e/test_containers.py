"""The demo's two models (llama.cpp and vLLM-cpu) in real podman containers
(issue 10, must-show 1): answers through the gateway with the official `openai`
client; `podman kill` mid-stream gives the client the error event within 1 s and
the always-on model restarts; no secret in any argv; `sparkstack logs` shows the
container's log; after `kill -9` of `up`, `sparkstack down` leaves no container."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import psutil
import pytest

from tests.containers_support import (
    build_image,
    container_stack,
    containers_conf,
    minilm_model,
    podman,
    remove_stack_containers,
    smol_model,
    stack_containers,
)
from tests.e2e.test_engine_isolation import assert_engines_refuse_without_key
from tests.support import UpProcess, get_json, start_up

pytestmark = pytest.mark.engines

HF_TOKEN = "hf_test_secret_0123456789abcdef"


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("podman")
    conf = containers_conf(folder)
    build_image(folder, conf)
    return conf


@pytest.fixture(scope="module")
def hf_token() -> Iterator[str]:
    """`up` inherits HF_TOKEN from the test's environment, as from a user's shell."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", HF_TOKEN)
        yield HF_TOKEN


@pytest.fixture(scope="module")
def up(conf: Path, tmp_path_factory: pytest.TempPathFactory, hf_token: str) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("container-stack")
    stack = container_stack(folder, conf, {"smol": smol_model(), "minilm": minilm_model()})
    state = folder / "state"
    process = start_up(stack, state)
    try:
        process.wait_ready(timeout=600)
        yield process
    finally:
        process.kill()
        process.sparkstack("down")
        remove_stack_containers(conf, state)


@pytest.fixture(scope="module")
def client(up: UpProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.url + "/v1", api_key="unused", max_retries=0)


def test_both_models_answer_from_containers(
    up: UpProcess, conf: Path, client: openai.OpenAI
) -> None:
    running = stack_containers(conf, up.state_dir, running_only=True)
    assert len(running) == 2, running
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert reply.choices[0].message.content
    vectors = client.embeddings.create(model="minilm", input="hello world")
    assert len(vectors.data[0].embedding) == 384
    data = get_json(up.url + "/v1/models")["data"]
    assert isinstance(data, list)
    models = {m["id"]: m for m in data}
    assert models["smol"]["image"] == "localhost/sparkstack-test-rootfs:1"
    assert models["smol"]["runtime"] == "container"


def test_footprints_carry_each_containers_cgroup_memory(up: UpProcess) -> None:
    """Issue 10: a running container's memory, as its cgroup charges it, goes into
    footprints.csv next to the plan (recorded just after each model's warm-up)."""
    deadline = time.monotonic() + 30
    rows: dict[str, dict[str, str]] = {}
    while set(rows) != {"smol", "minilm"} and time.monotonic() < deadline:
        time.sleep(0.5)
        path = up.state_dir / "footprints.csv"
        if path.exists():
            with path.open(newline="") as handle:
                rows = {row["model"]: row for row in csv.DictReader(handle)}
    for name in ("smol", "minilm"):
        assert int(rows[name]["cgroup_bytes"]) > 50 * 2**20, rows[name]
        assert int(rows[name]["planned_total_bytes"]) > 0


def test_no_secret_in_any_argv(up: UpProcess, conf: Path) -> None:
    secrets = {HF_TOKEN}
    for name in stack_containers(conf, up.state_dir):
        inspect = json.loads(podman(conf, "inspect", name).stdout)[0]
        env = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
        assert env.get("HF_TOKEN") == HF_TOKEN  # it did reach the container
        secrets |= {env[k] for k in ("API_KEY", "VLLM_API_KEY") if k in env}
    assert len(secrets) == 3
    for proc in psutil.process_iter(["cmdline"]):
        argv = " ".join(proc.info["cmdline"] or [])
        assert not any(secret in argv for secret in secrets), argv


def test_each_container_engine_refuses_every_path_without_its_key(
    up: UpProcess, client: openai.OpenAI
) -> None:
    """The key guard is mounted into the containers too (README, security): vLLM's
    /metrics, /sleep, ... and llama.cpp's /docs refuse a caller without the key, as
    the native engines do (test_engine_isolation), while the gateway serves both."""
    assert_engines_refuse_without_key(up)
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
    )
    assert reply.choices[0].message.content
    assert len(client.embeddings.create(model="minilm", input="hi").data[0].embedding) == 384


def test_kill_mid_stream_errors_within_a_second_and_restarts(
    up: UpProcess, conf: Path, client: openai.OpenAI
) -> None:
    [smol] = [n for n in stack_containers(conf, up.state_dir) if "-smol-" in n]
    stream = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=1000,
        stream=True,
    )
    killed_at = None
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if killed_at is None and chunk.choices and chunk.choices[0].delta.content:
                killed_at = time.monotonic()
                subprocess.run(["podman", "kill", smol], check=True, capture_output=True,
                               env={**up.env, "CONTAINERS_CONF": str(conf)})  # fmt: skip
    assert killed_at is not None
    assert time.monotonic() - killed_at < 1.0
    deadline = time.monotonic() + 60
    seen_down = False
    while time.monotonic() < deadline:
        health = up.health()
        state = health["models"]["smol"] if health else None  # type: ignore[index]
        seen_down = seen_down or state != "ready"
        if seen_down and state == "ready":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"smol did not restart:\n{up.output()}")
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert reply.choices[0].message.content
    assert "restarting smol" in up.output()


def test_logs_show_the_containers_log(up: UpProcess) -> None:
    result = up.sparkstack("logs", "smol", "-n", "100000")
    assert result.returncode == 0
    assert "in a container: podman" in result.stdout
    assert "killed by SIGKILL" in result.stdout  # the exit of the killed container
    assert "Uvicorn running on http://127.0.0.1" in result.stdout  # the engine's own output


def test_down_after_kill_9_of_up_removes_every_container(up: UpProcess, conf: Path) -> None:
    assert len(stack_containers(conf, up.state_dir, running_only=True)) == 2
    up.proc.kill()
    up.proc.wait()
    assert len(stack_containers(conf, up.state_dir, running_only=True)) == 2  # orphaned
    result = up.sparkstack("down")
    assert result.returncode == 0, result.stderr
    assert "removed container" in result.stdout
    assert stack_containers(conf, up.state_dir) == []
