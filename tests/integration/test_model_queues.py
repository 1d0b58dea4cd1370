"""Per-model queues with priorities through the whole gateway (issue 15, point 4;
a stub upstream: this is about the gateway's scheduling). With a model's limit
at 1 and its slot busy: queued requests are served highest key priority first,
FIFO within a priority; a full queue is a 429 with Retry-After; a queued client
that disconnects leaves the queue; and a drain lets the request in flight
finish while holding new ones back until it ends.
The queue depth is in /metrics and in /admin/status (per model: running, waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sparkstack.gateway import build_app
from sparkstack.gateway.keys import KeyIndex, KeyStore
from sparkstack.serve import start_gateway
from sparkstack.settings import Settings
from sparkstack.stack import load_stack_text
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.drain import drained
from sparkstack.supervisor.ports import free_port
from tests.integration.conftest import StartStub


@dataclass
class Recorder:
    """The stub's log: the label of each request in the order it reached the stub;
    a request labelled ``busy`` holds its slot until ``release`` is set."""

    seen: list[str]
    release: asyncio.Event

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.Response:
            label = (await request.json())["messages"][0]["content"]
            self.seen.append(label)
            if label.startswith("busy"):
                await self.release.wait()
            return web.json_response({"object": "chat.completion", "choices": []})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app


@dataclass
class Gateway:
    url: str
    supervisor: Supervisor


StartQueued = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder([], asyncio.Event())


@pytest.fixture
async def start_queued(
    tmp_path: Path, start_stub: StartStub, recorder: Recorder
) -> AsyncIterator[StartQueued]:
    """A gateway over the stub as models ``slow`` (the given settings) and ``other``."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(slow: str, keys: KeyStore | None = None) -> Gateway:
        upstream = await start_stub(recorder.app())
        stack = load_stack_text(
            f"models:\n  slow: {{engine: external, url: '{upstream}', {slow}}}\n"
            f"  other: {{engine: external, url: '{upstream}'}}\n",
            "test stack",
        )
        session = aiohttp.ClientSession()
        supervisor = Supervisor(stack, Settings(home=tmp_path, state_dir=tmp_path), session)
        index = KeyIndex(keys, check_interval=0.0) if keys else None
        port = free_port()
        app = build_app(supervisor.models, session, stack.gateway, index)
        runner = await start_gateway(app, "127.0.0.1", port)
        cleanups.extend([runner.cleanup, session.close])
        return Gateway(f"http://127.0.0.1:{port}", supervisor)

    yield start
    recorder.release.set()
    for cleanup in cleanups:
        await cleanup()


async def ask(
    client: aiohttp.ClientSession,
    url: str,
    label: str,
    key: str | None = None,
    model: str = "slow",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, object]]:
    body = {"model": model, "messages": [{"content": label}]}
    sent = dict(headers or {})
    if key:
        sent["Authorization"] = f"Bearer {key}"
    async with client.post(url + "/v1/chat/completions", json=body, headers=sent) as response:
        return response.status, dict(response.headers), await response.json()


async def queued(gateway: Gateway, count: int) -> None:
    """Wait until ``count`` requests are queued for ``slow``."""
    for _ in range(200):
        if gateway.supervisor.models["slow"].queued == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{gateway.supervisor.models['slow'].queued} queued, not {count}")


async def test_higher_priority_is_served_first_fifo_within_a_priority(
    start_queued: StartQueued, recorder: Recorder, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, low = store.create("batch", priority=0)
    _, high = store.create("interactive", priority=10)
    gateway = await start_queued("max_inflight: 1, max_queue: 8", keys=store)
    async with aiohttp.ClientSession() as client:
        busy = asyncio.create_task(ask(client, gateway.url, "busy", low))
        await asyncio.sleep(0.2)
        order = [
            ("low-1", low, None),
            ("low-2", low, None),
            ("high-1", high, None),
            ("low-3", low, {"X-Sparkstack-Priority": "100"}),  # held to its key's 0
            ("high-2", high, None),
            ("high-lowered", high, {"X-Sparkstack-Priority": "-5"}),  # asks for less
        ]
        tasks = []
        for n, (label, key, headers) in enumerate(order, start=1):
            tasks.append(asyncio.create_task(ask(client, gateway.url, label, key, headers=headers)))
            await queued(gateway, n)
        status, _, _ = await ask(client, gateway.url, "other-model", low, model="other")
        assert status == 200  # the other model is not behind this queue
        recorder.release.set()
        results = await asyncio.gather(busy, *tasks)
    assert [status for status, _, _ in results] == [200] * 7
    assert recorder.seen == [
        "busy", "other-model", "high-1", "high-2", "low-1", "low-2", "low-3", "high-lowered"
    ]  # fmt: skip
    assert gateway.supervisor.models["slow"].queued == 0


async def test_a_full_queue_is_a_429_with_retry_after(
    start_queued: StartQueued, recorder: Recorder
) -> None:
    gateway = await start_queued("max_inflight: 1, max_queue: 2")
    async with aiohttp.ClientSession() as client:
        busy = asyncio.create_task(ask(client, gateway.url, "busy"))
        await asyncio.sleep(0.2)
        waiting = [asyncio.create_task(ask(client, gateway.url, f"q{n}")) for n in range(2)]
        await queued(gateway, 2)
        async with client.get(gateway.url + "/metrics") as response:
            metrics = await response.text()
        assert 'sparkstack_requests_queued{model="slow"} 2' in metrics
        async with client.get(gateway.url + "/admin/status") as response:
            document = await response.json()
        slow = next(m for m in document["models"] if m["name"] == "slow")
        assert (slow["running"], slow["waiting"]) == (1, 2)
        status, headers, body = await ask(client, gateway.url, "one too many")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        error = body["error"]
        assert isinstance(error, dict)
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "model_queue_full"
        assert "models.slow.max_queue" in error["message"]
        recorder.release.set()
        assert [s for s, _, _ in await asyncio.gather(busy, *waiting)] == [200, 200, 200]
    assert "one too many" not in recorder.seen


async def test_retry_after_comes_from_recent_service_times(
    start_queued: StartQueued, recorder: Recorder
) -> None:
    gateway = await start_queued("max_inflight: 1, max_queue: 1")
    async with aiohttp.ClientSession() as client:
        busy = asyncio.create_task(ask(client, gateway.url, "busy-1"))
        await asyncio.sleep(2.2)  # one request served in ~2.2 s
        recorder.release.set()
        assert (await busy)[0] == 200
        recorder.release.clear()
        busy = asyncio.create_task(ask(client, gateway.url, "busy-2"))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(ask(client, gateway.url, "waits"))
        await queued(gateway, 1)
        status, headers, _ = await ask(client, gateway.url, "refused")
        recorder.release.set()
        await asyncio.gather(busy, waiting)
    # two ahead of a new request (one queued, itself), one at a time, ~2.2 s each
    assert status == 429 and 4 <= int(headers["Retry-After"]) <= 6


async def test_a_queued_client_that_disconnects_leaves_the_queue(
    start_queued: StartQueued, recorder: Recorder
) -> None:
    gateway = await start_queued("max_inflight: 1, max_queue: 4")
    async with aiohttp.ClientSession() as client:
        busy = asyncio.create_task(ask(client, gateway.url, "busy"))
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as impatient:
            with pytest.raises(TimeoutError):
                await ask(impatient, gateway.url, "gone")
        await queued(gateway, 0)  # left the queue when its connection closed
        stays = asyncio.create_task(ask(client, gateway.url, "stays"))
        await queued(gateway, 1)
        recorder.release.set()
        assert [s for s, _, _ in await asyncio.gather(busy, stays)] == [200, 200]
        async with client.get(gateway.url + "/metrics") as response:
            metrics = await response.text()
    assert recorder.seen == ["busy", "stays"]  # "gone" never reached the model
    assert 'sparkstack_requests_queued{model="slow"} 0' in metrics


async def test_a_drain_finishes_in_flight_and_holds_new_requests(
    start_queued: StartQueued, recorder: Recorder
) -> None:
    gateway = await start_queued("max_inflight: 4, drain_timeout: 10s")
    runtime = gateway.supervisor.models["slow"]
    async with aiohttp.ClientSession() as client:
        busy = asyncio.create_task(ask(client, gateway.url, "busy"))
        await asyncio.sleep(0.2)
        outcome: list[str] = []

        async def put_away() -> None:
            async with drained(runtime) as empty:
                outcome.append(f"drained={empty}, seen={recorder.seen}")

        drain = asyncio.create_task(put_away())
        await asyncio.sleep(0.1)
        held = asyncio.create_task(ask(client, gateway.url, "held"))
        await queued(gateway, 1)  # a free slot, but the model drains: held back
        assert recorder.seen == ["busy"] and not drain.done()
        recorder.release.set()
        assert (await busy)[0] == 200  # the request in flight completes
        await asyncio.wait_for(drain, 2)
        assert (await held)[0] == 200  # and the held one goes on after the drain
    assert outcome == ["drained=True, seen=['busy']"]
    assert recorder.seen == ["busy", "held"]
