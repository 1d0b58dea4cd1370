"""The checks of `sparkstack doctor`, one function each, in the order printed.

Every check reads the host only through ``HostProbe`` and the stack only through
its plan and model facts, so a test can hand it a failing case."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparkstack.containers.config import runtime_of
from sparkstack.deploy.doctor import CheckResult, HostProbe, Status
from sparkstack.deploy.tiktoken_files import encodings_dir, missing_encodings, needs_tiktoken
from sparkstack.deploy.weights import is_repo_id, weights_present
from sparkstack.gateway.keys import KeyStore
from sparkstack.machine import GIB, MachineProfile
from sparkstack.modelfacts.facts import LayerKind, ModelFacts
from sparkstack.modelfacts.hub import hf_cache_dir
from sparkstack.planner.plan import StackPlan
from sparkstack.stack.schema import ContainerCli, Runtime, Stack

_CONTAINER_CLIS = ("podman", "docker")


@dataclass(frozen=True)
class DoctorInput:
    """What the checks look at: the stack, its plan and facts, and the host."""

    stack: Stack
    stack_label: str
    plan: StackPlan
    machine: MachineProfile
    facts: dict[str, ModelFacts]
    host: HostProbe
    keys_file: Path


Check = Callable[[DoctorInput], CheckResult]


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_memory(d: DoctorInput) -> CheckResult:
    name, plan, reserve = "memory", d.plan, d.plan.machine.reserve_bytes
    if not plan.fits:
        left = plan.machine.total_bytes - plan.peak_bytes
        way_out = plan.suggestions[0] if plan.suggestions else "remove a model"
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"the planned peak {_gib(plan.peak_bytes)} leaves the host {_gib(left)} of "
            f"{_gib(plan.machine.total_bytes)}, less than its reserve {_gib(reserve)}",
            fix=f"{way_out} (all options: `sparkstack plan {d.stack_label}`)",
        )  # fmt: skip
    if not plan.machine.unified:
        return CheckResult(name=name, status=Status.OK, message="the plan fits the GPU's memory")
    available = d.host.meminfo_bytes().get("MemAvailable", 0)
    left = available - plan.peak_bytes
    if left < reserve:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"unified memory: MemAvailable is {_gib(available)} now, so the planned "
            f"peak {_gib(plan.peak_bytes)} would leave the host {_gib(left)}, less than its "
            f"reserve {_gib(reserve)}: the host would freeze, not the engine",
            fix="stop what holds the memory now (`ps aux --sort=-rss | head`; another engine "
            "or container?), or plan less: lower context/concurrency, kv_cache_dtype: fp8",
        )  # fmt: skip
    return CheckResult(
        name=name, status=Status.OK,
        message=f"planned peak {_gib(plan.peak_bytes)} of {_gib(available)} available, "
        f"{_gib(left)} left for the host (reserve {_gib(reserve)})",
    )  # fmt: skip


def container_models(stack: Stack) -> list[str]:
    """Models that run inside a container (``runtime: container``, or a docker/podman
    ``command:``)."""
    names = []
    for name, spec in stack.models.items():
        command = spec.command or []
        if runtime_of(stack, spec) is Runtime.CONTAINER or (
            command and Path(command[0]).name in _CONTAINER_CLIS
        ):
            names.append(name)
    return names


def _has_nvidia_cdi(host: HostProbe) -> bool:
    for folder in host.cdi_dirs:
        if folder.is_dir() and any(p.name.startswith("nvidia") for p in folder.iterdir()):
            return True
    return False


def check_containers(d: DoctorInput) -> CheckResult:
    name, models = "containers", container_models(d.stack)
    if not models:
        return CheckResult(name=name, status=Status.SKIP, message="no model runs in a container")
    chosen = {d.stack.models[m].container_cli or d.stack.container.cli for m in models}
    wanted = [c.value for c in chosen if c is not ContainerCli.AUTO]
    candidates = wanted or list(_CONTAINER_CLIS)
    found = next((c for c in candidates if d.host.which(c)), None)
    if found is None:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"{', '.join(models)} run in a container, but no container CLI "
            f"({' or '.join(candidates)}) is on PATH",
            fix="install one: `sudo apt install podman runc` (or docker.io)",
        )  # fmt: skip
    if d.machine.device == "cuda":
        runtime = d.host.which("nvidia-container-runtime") or d.host.which("nvidia-ctk")
        if not (_has_nvidia_cdi(d.host) or runtime):
            folders = ", ".join(str(f) for f in d.host.cdi_dirs)
            return CheckResult(
                name=name, status=Status.FAIL,
                message=f"{found} is there, but neither the NVIDIA container runtime nor a "
                f"CDI spec (nvidia.yaml in {folders}) is: the containers would not see the GPU",
                fix="install nvidia-container-toolkit, then `sudo nvidia-ctk cdi generate "
                "--output=/etc/cdi/nvidia.yaml` (podman) or `sudo nvidia-ctk runtime configure "
                "--runtime=docker && sudo systemctl restart docker`",
            )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message=f"{found} runs {', '.join(models)}")


def check_hf_cache(d: DoctorInput) -> CheckResult:
    name, cache = "hf_cache", hf_cache_dir()
    missing = {
        m.name: m.weights_bytes
        for m in d.plan.models
        if is_repo_id(m.model) and m.model and not weights_present(m.model)
    }
    free = d.host.disk_free(cache)
    need = sum(missing.values())
    if need > free:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"the HF cache {cache} has {_gib(free)} free, but the weights not yet there "
            f"({', '.join(missing)}) need {_gib(need)}",
            fix="free space there, or put the cache on a larger disk: HF_HOME=/big/disk/hf in "
            f".env (and the compose mount), then `sparkstack pull {d.stack_label}`",
        )  # fmt: skip
    if missing:
        return CheckResult(
            name=name, status=Status.WARN,
            message=f"not in the HF cache {cache} yet: {', '.join(missing)} ({_gib(need)}; "
            f"{_gib(free)} free); the engines would download at start, and cannot offline",
            fix=f"`sparkstack pull {d.stack_label}` now, while the hub is reachable",
        )  # fmt: skip
    return CheckResult(
        name=name, status=Status.OK, message=f"{cache}: every model's weights are there"
    )


def check_tiktoken(d: DoctorInput) -> CheckResult:
    name = "tiktoken"
    models = [n for n, spec in d.stack.models.items() if needs_tiktoken(spec.model)]
    if not models:
        return CheckResult(name=name, status=Status.SKIP, message="no gpt-oss model")
    folder = encodings_dir()
    missing = missing_encodings(folder)
    if missing:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"{', '.join(models)} (gpt-oss) need the tiktoken encodings "
            f"{', '.join(missing)} in {folder}; offline the engine fails at start fetching them",
            fix=f"`sparkstack pull {d.stack_label}` fetches them there, and put "
            f"TIKTOKEN_ENCODINGS_BASE={folder} in .env",
        )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message=f"encodings present in {folder}")


def check_ports(d: DoctorInput) -> CheckResult:
    gateway = d.stack.gateway
    if d.host.port_free(gateway.host, gateway.port):
        return CheckResult(name="ports", status=Status.OK, message=f"{gateway.listen} is free")
    return CheckResult(
        name="ports", status=Status.FAIL,
        message=f"the gateway's address {gateway.listen} is already in use",
        fix=f"stop what listens there (`ss -ltnp 'sport = :{gateway.port}'` names it; "
        "`sparkstack down` if it is a stack), or set gateway.listen to another port",
    )  # fmt: skip


def _sm121_caveats(model: str, facts: ModelFacts) -> list[str]:
    formats = set(facts.weight_bytes_by_format)
    caveats = []
    if "MXFP4" in formats:
        caveats.append(
            f"{model}: MXFP4 has no native sm_121 kernel; vLLM's default path can hang on the "
            "first decode (use a validated recipe/image, llama.cpp, or an FP8 model)"
        )
    if "NVFP4" in formats:
        caveats.append(
            f"{model}: NVFP4 runs on CUTLASS FP4 kernels that have produced silent garbage on "
            "sm_121; use a checkpoint and image validated for sm_121"
        )
    if facts.count(LayerKind.STATE):
        caveats.append(f"{model}: GatedDeltaNet/Mamba layers decode slowly on stock sm_121 kernels")
    return caveats


def check_sm121(d: DoctorInput) -> CheckResult:
    name = "sm_121"
    if d.machine.compute_capability != "12.1":
        return CheckResult(
            name=name, status=Status.SKIP,
            message=f"not an sm_121 GPU ({d.machine.gpu or d.machine.device})",
        )  # fmt: skip
    caveats = [c for model, facts in d.facts.items() for c in _sm121_caveats(model, facts)]
    if caveats:
        return CheckResult(
            name=name, status=Status.WARN, message="; ".join(caveats),
            fix="prefer FP8 checkpoints on GB10; otherwise pin the image the recipe was "
            "validated with and set enforce_eager: true until the first answers are right",
        )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message="no format with a known sm_121 issue")


def _tls_in_front(host: HostProbe, port: int) -> bool:
    for folder in host.nginx_sites:
        if not folder.is_dir():
            continue
        for site in folder.iterdir():
            try:
                text = site.read_text(errors="replace")
            except OSError:
                continue
            if re.search(rf"server\s+[^;\s]+:{port}\s*;", text) and re.search(r"\bssl\b", text):
                return True
    return False


def check_exposure(d: DoctorInput) -> CheckResult:
    name, gateway = "exposure", d.stack.gateway
    if gateway.is_loopback:
        return CheckResult(name=name, status=Status.OK, message=f"{gateway.listen}: loopback only")
    active = [k for k in KeyStore(d.keys_file).load().keys if not k.revoked]
    if not active:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"the gateway listens on {gateway.listen}, beyond loopback, with no API key: "
            "anyone on the network could use every model",
            fix="`sparkstack keys create NAME` (clients send it as a Bearer token); `up` refuses "
            "this stack until a key exists",
        )  # fmt: skip
    if not _tls_in_front(d.host, gateway.port):
        return CheckResult(
            name=name, status=Status.WARN,
            message=f"the gateway listens on {gateway.listen} in plain HTTP and no nginx site "
            "with TLS points at it: keys and prompts cross the network readable",
            fix="bind the gateway to the intranet IP and put TLS in front: `sparkstack export "
            "nginx --server-name NAME --upstream-ip IP` into sites-available, then `certbot "
            "--nginx -d NAME`",
        )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message="keys on, TLS in front (nginx)")


def check_env_file(d: DoctorInput) -> CheckResult:
    name = "env_file"
    exposed = []
    for folder in d.host.env_dirs:
        path = folder / ".env"
        if path.is_file() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            exposed.append(f"{path} (mode {stat.S_IMODE(path.stat().st_mode):o})")
    if exposed:
        return CheckResult(
            name=name, status=Status.FAIL,
            message=f"{', '.join(exposed)} holds secrets and is readable by other users",
            fix="chmod 600 " + " ".join(e.split(" ")[0] for e in exposed),
        )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message=".env private (or none)")


def check_swap_overcommit(d: DoctorInput) -> CheckResult:
    name = "swap_overcommit"
    if not d.plan.machine.unified:
        return CheckResult(name=name, status=Status.SKIP, message="discrete GPU memory")
    mode = d.host.overcommit_memory.read_text().strip()
    if mode == "1":
        return CheckResult(
            name=name, status=Status.FAIL,
            message="vm.overcommit_memory=1 (always): no allocation ever fails, so on unified "
            "memory an engine's spike runs the host out of pages and it stalls (ssh dead) "
            "instead of one process failing or being OOM-killed",
            fix="`sudo sysctl vm.overcommit_memory=0`, and keep it in a file under /etc/sysctl.d/",
        )  # fmt: skip
    swap = d.host.swap_bytes()
    if swap:
        return CheckResult(
            name=name, status=Status.WARN,
            message=f"{_gib(swap)} of swap is active: on unified memory the GPU's memory is the "
            "host's, so under pressure the host thrashes and freezes for minutes before the "
            "OOM killer acts",
            fix="`sudo swapoff -a` (and drop it from /etc/fstab), or keep a small swap with "
            "earlyoom/systemd-oomd killing the engine first",
        )  # fmt: skip
    return CheckResult(name=name, status=Status.OK, message=f"vm.overcommit_memory={mode}, no swap")


CHECKS: list[Check] = [
    check_memory,
    check_containers,
    check_hf_cache,
    check_tiktoken,
    check_ports,
    check_sm121,
    check_exposure,
    check_env_file,
    check_swap_overcommit,
]
