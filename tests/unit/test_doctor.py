"""`sparkstack doctor`: each check with its failing case and its message, the
host read from injected files and probes (issue 13, point 4)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sparkstack.deploy.diagnose import diagnose
from sparkstack.deploy.doctor import CheckResult, DoctorReport, HostProbe, Status, render_report
from sparkstack.gateway.keys import KeyStore
from sparkstack.stack import load_stack, load_stack_text
from tests.support import REPO, SMOL_GGUF

GIB = 2**30
EXAMPLES = REPO / "examples"
SMOL_STACK = (
    "machine: {{total_gib: 64, unified: true, device: cpu}}\nhost_reserve_gib: 2\n"
    "gateway: {{listen: '{listen}'}}\n"
    "models:\n  smol: {{engine: llamacpp, model: '" + SMOL_GGUF + "', context: 512}}\n"
)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HostProbe:
    """A healthy host: plenty of memory, no swap, overcommit 0, an empty HF cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE", raising=False)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text("MemTotal: 134217728 kB\nMemAvailable: 125829120 kB\n")
    (proc / "overcommit_memory").write_text("0\n")
    (proc / "swaps").write_text("Filename Type Size Used Priority\n")
    return HostProbe(
        meminfo=proc / "meminfo", overcommit_memory=proc / "overcommit_memory",
        swaps=proc / "swaps", nginx_sites=(tmp_path / "sites",), cdi_dirs=(tmp_path / "cdi",),
        env_dirs=(tmp_path,), search_path=str(tmp_path / "bin"),
        port_free=lambda host, port: True, disk_free=lambda path: 4096 * GIB,
    )  # fmt: skip


def run(stack_text: str, host: HostProbe, tmp_path: Path) -> DoctorReport:
    stack = load_stack_text(stack_text, "test stack")
    return diagnose(stack, "stack.yaml", host, tmp_path / "config" / "keys.json")


def run_file(name: str, host: HostProbe, tmp_path: Path) -> DoctorReport:
    stack = load_stack(EXAMPLES / name)
    return diagnose(stack, f"examples/{name}", host, tmp_path / "config" / "keys.json")


def check(report: DoctorReport, name: str) -> CheckResult:
    return next(c for c in report.checks if c.name == name)


def smol(listen: str = "127.0.0.1:8080") -> str:
    return SMOL_STACK.format(listen=listen)


def test_healthy_host_passes(host: HostProbe, tmp_path: Path) -> None:
    report = run(smol(), host, tmp_path)
    assert report.ok, render_report(report)
    assert render_report(report).endswith("all checks passed")


def test_memory_plan_over_budget(host: HostProbe, tmp_path: Path) -> None:
    report = run_file("seed000-gpt-oss-pair-overcommitted.yaml", host, tmp_path)
    result = check(report, "memory")
    assert result.status is Status.FAIL and not report.ok
    assert "less than its reserve 20.0 GiB" in result.message
    assert "sparkstack plan examples/seed000-gpt-oss-pair-overcommitted.yaml" in result.fix


def test_memory_available_now_too_low(host: HostProbe, tmp_path: Path) -> None:
    host.meminfo.write_text("MemTotal: 67108864 kB\nMemAvailable: 1048576 kB\n")  # 1 GiB free
    result = check(run(smol(), host, tmp_path), "memory")
    assert result.status is Status.FAIL
    assert "MemAvailable is 1.0 GiB now" in result.message
    assert "less than its reserve 2.0 GiB" in result.message and "ps aux" in result.fix


def container_stack(device: str) -> str:
    return (
        f"machine: {{total_gib: 80, unified: false, device: {device}}}\nhost_reserve_gib: 1\n"
        "models:\n  q:\n    engine: vllm\n    model: Qwen/Qwen3.6-35B-A3B-FP8\n"
        "    command: [podman, run, --rm, vllm/vllm-openai]\n"
    )


def test_containers_without_a_cli(host: HostProbe, tmp_path: Path) -> None:
    result = check(run(container_stack("cuda"), host, tmp_path), "containers")
    assert result.status is Status.FAIL
    assert "no container CLI (podman or docker) is on PATH" in result.message
    assert "apt install podman" in result.fix


def test_containers_without_nvidia_runtime_or_cdi(host: HostProbe, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "podman").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "podman").chmod(0o755)
    result = check(run(container_stack("cuda"), host, tmp_path), "containers")
    assert result.status is Status.FAIL
    assert "neither the NVIDIA container runtime nor a CDI spec" in result.message
    assert "nvidia-ctk cdi generate" in result.fix
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    assert check(run(container_stack("cuda"), host, tmp_path), "containers").status is Status.OK


def test_hf_cache_without_room_for_the_weights(host: HostProbe, tmp_path: Path) -> None:
    small = HostProbe(**{**host.__dict__, "disk_free": lambda path: 10 * GIB})
    result = check(run_file("seed002-qwen36-35b-fp8.yaml", small, tmp_path), "hf_cache")
    assert result.status is Status.FAIL
    assert f"the HF cache {tmp_path / 'hf' / 'hub'} has 10.0 GiB free" in result.message
    assert "(qwen36) need" in result.message and "HF_HOME=" in result.fix
    roomy = check(run_file("seed002-qwen36-35b-fp8.yaml", host, tmp_path), "hf_cache")
    assert roomy.status is Status.WARN and "sparkstack pull" in roomy.fix


def test_tiktoken_missing_for_gpt_oss(host: HostProbe, tmp_path: Path) -> None:
    result = check(run_file("seed000-gpt-oss-pair.yaml", host, tmp_path), "tiktoken")
    assert result.status is Status.FAIL
    assert "brain, sprinter (gpt-oss) need the tiktoken encodings" in result.message
    assert "o200k_base.tiktoken" in result.message and "TIKTOKEN_ENCODINGS_BASE=" in result.fix
    folder = tmp_path / "hf" / "tiktoken_encodings"
    folder.mkdir(parents=True)
    for name in ("o200k_base.tiktoken", "cl100k_base.tiktoken"):
        (folder / name).write_text("x")
    assert check(run_file("seed000-gpt-oss-pair.yaml", host, tmp_path), "tiktoken").status is (
        Status.OK
    )


def test_port_in_use(tmp_path: Path, host: HostProbe) -> None:
    from sparkstack.deploy.doctor import port_free

    real = HostProbe(**{**host.__dict__, "port_free": port_free})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        result = check(run(smol(listen), real, tmp_path), "ports")
    assert result.status is Status.FAIL
    assert f"the gateway's address {listen} is already in use" in result.message
    assert "ss -ltnp" in result.fix


@pytest.mark.parametrize(
    ("stack", "caveat"),
    [
        ("seed000-gpt-oss-pair.yaml", "MXFP4 has no native sm_121 kernel"),
        ("seed001-nemotron-super.yaml", "CUTLASS FP4 kernels"),
        ("seed002-qwen36-35b-fp8.yaml", "GatedDeltaNet/Mamba layers decode slowly"),
    ],
)
def test_sm121_caveats(stack: str, caveat: str, host: HostProbe, tmp_path: Path) -> None:
    result = check(run_file(stack, host, tmp_path), "sm_121")
    assert result.status is Status.WARN
    assert caveat in result.message and "FP8" in result.fix


def test_listening_beyond_loopback(host: HostProbe, tmp_path: Path) -> None:
    stack = smol("0.0.0.0:8080")
    result = check(run(stack, host, tmp_path), "exposure")
    assert result.status is Status.FAIL
    assert "beyond loopback, with no API key" in result.message
    assert "sparkstack keys create" in result.fix

    KeyStore(tmp_path / "config" / "keys.json").create("ops")
    result = check(run(stack, host, tmp_path), "exposure")
    assert result.status is Status.WARN and "plain HTTP" in result.message
    assert "certbot --nginx" in result.fix

    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "llm").write_text(
        "upstream u { server 192.168.0.50:8080; }\nserver { listen 443 ssl; }\n"
    )
    assert check(run(stack, host, tmp_path), "exposure").status is Status.OK


def test_env_file_readable_by_others(host: HostProbe, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("HF_TOKEN=hf_x\n")
    env.chmod(0o644)
    result = check(run(smol(), host, tmp_path), "env_file")
    assert result.status is Status.FAIL
    assert "(mode 644) holds secrets and is readable by other users" in result.message
    assert result.fix == f"chmod 600 {env}"
    env.chmod(0o600)
    assert check(run(smol(), host, tmp_path), "env_file").status is Status.OK


def test_overcommit_always_on_unified_memory(host: HostProbe, tmp_path: Path) -> None:
    host.overcommit_memory.write_text("1\n")
    result = check(run(smol(), host, tmp_path), "swap_overcommit")
    assert result.status is Status.FAIL
    assert "vm.overcommit_memory=1 (always)" in result.message
    assert "sysctl vm.overcommit_memory=0" in result.fix


def test_swap_on_unified_memory(host: HostProbe, tmp_path: Path) -> None:
    host.swaps.write_text("Filename Type Size Used Priority\n/swap.img file 16777212 0 -2\n")
    result = check(run(smol(), host, tmp_path), "swap_overcommit")
    assert result.status is Status.WARN
    assert "16.0 GiB of swap is active" in result.message and "swapoff" in result.fix


def test_cli_json_and_exit_code(tmp_path: Path) -> None:
    env = {**os.environ, "SPARKSTACK_CONFIG_DIR": str(tmp_path / "config"),
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "doctor", str(EXAMPLES / "seed000-gpt-oss-pair.yaml"),
         "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["exposure"] == "fail" and statuses["tiktoken"] == "fail"
    assert set(statuses) == {
        "memory", "containers", "hf_cache", "tiktoken", "ports", "sm_121", "exposure",
        "env_file", "swap_overcommit",
    }  # fmt: skip


def test_containers_runtime_from_the_stack(host: HostProbe, tmp_path: Path) -> None:
    result = check(run_file("containers/seed002-qwen36-35b-fp8.yaml", host, tmp_path), "containers")
    assert result.status is Status.FAIL and "qwen36 run in a container" in result.message
