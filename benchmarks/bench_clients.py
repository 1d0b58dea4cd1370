"""The two clients the bench benchmarks run side by side: `sparkstack bench` (a
subprocess of its own, its summary read back) and NVIDIA aiperf, installed from
PyPI into its own venv under $SPARKSTACK_HOME/tools/aiperf (never into ours), fed
a tokenizer laid out as a Hugging Face cache entry (aiperf takes no plain folder
offline), run with HF_HUB_OFFLINE=1, its JSON export read back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sparkstack.bench.summary import RunSummary
from sparkstack.settings import Settings

REPO = Path(__file__).resolve().parent.parent

AIPERF_VERSION = "0.13.0"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def aiperf_bin() -> Path:
    venv = Settings.from_env().home / "tools" / "aiperf"
    binary = venv / "bin" / "aiperf"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                f"aiperf=={AIPERF_VERSION}",
            ],
            check=True,
        )
    return binary


def hf_cache_tokenizer(folder: Path, repo_id: str, hf_home: Path) -> None:
    """Lay ``folder``'s tokenizer files out as ``hf_home/hub/models--ORG--NAME``."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "local"
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (folder / name).exists():
            shutil.copy(folder / name, snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("local")


def run_aiperf(
    url: str, model: str, tokenizer: str, hf_home: Path, out: Path, args: list[str]
) -> tuple[dict[str, object], float]:
    """One aiperf profile; its JSON export and the wall seconds it took."""
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    began = time.monotonic()
    subprocess.run(
        [
            str(aiperf_bin()),
            "profile",
            "--model",
            model,
            "--tokenizer",
            tokenizer,
            "--url",
            url,
            "--endpoint-type",
            "chat",
            "--streaming",
            "--ui-type",
            "none",
            "--artifact-dir",
            str(out),
            *args,
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.monotonic() - began
    data: dict[str, object] = json.loads((out / "profile_export_aiperf.json").read_text())
    return data, wall


def metric(data: dict[str, object], name: str, stat: str = "avg") -> float:
    entry = data[name]
    assert isinstance(entry, dict)
    return float(entry[stat])


def run_sparkstack_bench(
    url: str, model: str, out: Path, args: list[str], cpu: str | None = None
) -> RunSummary:
    """One `sparkstack bench` run into ``out`` (pinned to ``cpu`` when given)."""
    pin = ["taskset", "-c", cpu] if cpu else []
    subprocess.run(
        [*pin, sys.executable, "-m", "sparkstack", "bench", url, "--model", model,
         "--out", str(out), *args],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return RunSummary.read(out / "summary.json")
