"""A model's queue on its own (issue 15, queues): slots, priority order, FIFO
within a priority, a full queue, leaving it, Retry-After, and a drain holding
every slot back; the drain itself (supervisor/drain.py) and the eviction
choice when nothing idle can go."""

from __future__ import annotations

import asyncio
import time

import pytest

from sparkstack.engines.registry import get_engine
from sparkstack.errors import GatewayError
from sparkstack.gateway.keys import KeyRecord
from sparkstack.gateway.metrics import GatewayMetrics
from sparkstack.gateway.model_queue import (
    ModelQueue,
    ModelQueues,
    model_limits,
    request_priority,
)
from sparkstack.stack import load_stack_text
from sparkstack.supervisor.drain import drained
from sparkstack.supervisor.ledger import MemoryLedger
from sparkstack.supervisor.runtime import ModelRuntime, ModelState


def runtime(extra: str = "", policy: str = "always_on") -> ModelRuntime:
    stack = load_stack_text(
        f"models:\n  m: {{engine: external, url: 'http://127.0.0.1:9', policy: {policy}"
        f"{', ' + extra if extra else ''}}}\n",
        "stack.yaml",
    )
    return ModelRuntime(spec=stack.models["m"], adapter=get_engine("external"))


def queue(limit: int = 1, extra: str = "max_queue: 8") -> ModelQueue:
    return ModelQueue(runtime(extra), limit, GatewayMetrics())


async def served_order(q: ModelQueue, requests: list[tuple[str, int]]) -> list[str]:
    """Queue ``requests`` (label, priority) in that order behind one busy slot, free
    the slot, and return the order the slots were handed out in."""
    order: list[str] = []

    async def one(label: str, priority: int) -> None:
        await q.wait(priority)
        order.append(label)
        await asyncio.sleep(0)
        q.release(0.1)

    assert q.take()
    tasks = []
    for label, priority in requests:
        tasks.append(asyncio.create_task(one(label, priority)))
        await asyncio.sleep(0)  # arrival order is the creation order
    q.release(0.1)
    await asyncio.gather(*tasks)
    return order


async def test_higher_priority_first_fifo_within_a_priority() -> None:
    q = queue()
    order = await served_order(
        q, [("low1", 0), ("low2", 0), ("high1", 5), ("mid", 2), ("high2", 5), ("low3", 0)]
    )
    assert order == ["high1", "high2", "mid", "low1", "low2", "low3"]
    assert (q.running, q.queued, q.runtime.queued) == (0, 0, 0)


async def test_the_fast_path_takes_free_slots_without_queueing() -> None:
    q = queue(limit=3)
    assert [q.take() for _ in range(4)] == [True, True, True, False]
    q.release(0.2)
    assert q.take()


async def test_a_full_queue_is_a_429_with_retry_after() -> None:
    q = queue(limit=2, extra="max_queue: 2")
    assert q.take() and q.take()
    waiters = [asyncio.create_task(q.wait(0)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(GatewayError) as full:
        await q.wait(9)
    assert full.value.status == 429 and full.value.code == "model_queue_full"
    assert full.value.retry_after == 1  # no service time seen yet: 1 s
    assert "models.m.max_queue" in full.value.message
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert q.queued == 0


def test_retry_after_follows_recent_service_times() -> None:
    q = queue(limit=2)
    for seconds in (10.0, 10.0, 10.0):
        q.running += 1
        q.release(seconds)
    assert q.service == pytest.approx(10.0)
    q.queued = 5  # 6 ahead of a new one, 2 at a time, 10 s each
    assert q.retry_after() == 30
    q.running += 1
    q.release(0.0)  # the average moves by a fifth of the difference
    assert q.service == pytest.approx(8.0)


async def test_a_waiter_that_leaves_is_skipped() -> None:
    q = queue()
    assert q.take()
    gone = asyncio.create_task(q.wait(10))
    stays = asyncio.create_task(q.wait(0))
    await asyncio.sleep(0)
    assert q.queued == 2
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert q.queued == 1 and q.metrics.queued["m"] == 1
    q.release(0.1)
    await stays
    assert q.running == 1 and q.queued == 0


async def test_a_slot_that_arrives_as_its_waiter_leaves_is_passed_on() -> None:
    q = queue()
    assert q.take()
    first = asyncio.create_task(q.wait(0))
    second = asyncio.create_task(q.wait(0))
    await asyncio.sleep(0)
    q.release(0.1)  # the slot goes to first's future ...
    first.cancel()  # ... but its client leaves before it runs
    await asyncio.gather(first, return_exceptions=True)
    await second
    assert q.running == 1 and q.queued == 0


async def test_the_queue_wait_is_bounded() -> None:
    q = queue(extra="queue_timeout: 0.2s")
    assert q.take()
    began = time.monotonic()
    with pytest.raises(GatewayError) as late:
        await q.wait(0)
    assert 0.15 < time.monotonic() - began < 2
    assert late.value.status == 503 and late.value.code == "model_queue_timeout"
    assert late.value.retry_after is not None and late.value.retry_after >= 1
    assert q.queued == 0 and q.running == 1


async def test_a_drain_holds_every_slot_until_it_ends() -> None:
    q = queue(limit=2, extra="drain_timeout: 5s")
    rt = q.runtime
    assert q.take()
    rt.inflight = 1
    waiting = asyncio.create_task(q.wait(0))

    async def finish_in_flight() -> None:
        await asyncio.sleep(0.2)
        rt.inflight = 0
        q.release(0.2)

    finisher = asyncio.create_task(finish_in_flight())
    async with drained(rt) as empty:
        assert empty and rt.draining and rt.inflight == 0
        assert not waiting.done() and q.running == 0  # the freed slot was held back
        assert not q.take()  # and no new request gets one
    await finisher
    await asyncio.wait_for(waiting, 1)  # the drain ended: it goes on
    assert not rt.draining and q.running == 1


async def test_a_drain_is_bounded() -> None:
    rt = runtime("drain_timeout: 0.2s")
    rt.inflight = 1
    began = time.monotonic()
    async with drained(rt) as empty:
        assert not empty
    assert 0.15 < time.monotonic() - began < 2 and not rt.draining


def test_a_busy_model_is_drained_only_when_nothing_idle_can_go() -> None:
    stack = load_stack_text(
        "models:\n"
        "  a: {engine: external, url: 'http://127.0.0.1:9', policy: on_demand}\n"
        "  b: {engine: external, url: 'http://127.0.0.1:9', policy: on_demand}\n"
        "  c: {engine: external, url: 'http://127.0.0.1:9'}\n",
        "stack.yaml",
    )
    models = {
        name: ModelRuntime(spec=spec, adapter=get_engine("external"))
        for name, spec in stack.models.items()
    }
    ledger = MemoryLedger(None, models)
    for rt in models.values():
        rt.state = ModelState.READY
    models["a"].inflight = 1
    assert ledger.next_victim("c") is models["b"]
    models["b"].inflight = 1
    models["b"].last_used = 5.0
    assert ledger.next_victim("c") is None
    assert ledger.busy_victim("c") is models["a"]  # least recently used of the busy
    models["a"].waiting = 1  # a wake waits on it: never drained
    assert ledger.busy_victim("c") is models["b"]


def test_priority_from_key_and_header() -> None:
    key = KeyRecord(id="1", name="k", hash="h", created=0.0, priority=5)
    assert request_priority(None, None) == 0
    assert request_priority(key, None) == 5
    assert request_priority(key, "2") == 2  # lower on request
    assert request_priority(key, "50") == 5  # never above the key's
    assert request_priority(None, "-3") == -3  # an open gateway takes the header
    with pytest.raises(GatewayError) as bad:
        request_priority(key, "high")
    assert bad.value.status == 400 and "X-Sparkstack-Priority" in bad.value.message


def test_model_limits_share_the_gateway_cap_unless_set() -> None:
    assert model_limits(1024, {"a": None, "b": None}) == {"a": 512, "b": 512}
    assert model_limits(10, {"a": 3, "b": None, "c": None}) == {"a": 3, "b": 3, "c": 3}
    assert model_limits(1, {"a": None, "b": None}) == {"a": 1, "b": 1}


def test_a_model_added_or_replaced_later_gets_its_own_queue() -> None:
    first = runtime("max_inflight: 3")
    models = {"m": first}
    queues = ModelQueues(models, 8, GatewayMetrics())
    assert queues.get(first) is queues.get(first) and queues.get(first).limit == 3
    replaced = runtime()  # a reload made a new runtime for the same name
    models["m"] = replaced
    assert queues.get(replaced).runtime is replaced and queues.get(replaced).limit == 8
