"""The nodes of a running cluster for ``/admin/status``, ``status`` and ``top``:
state, Ray resources, each node's memory, and the models placed on it.

One long-lived Ray driver in vLLM's venv (sparkstack's venv carries no Ray)
reads Ray's node table and runs a zero-CPU task pinned to each live node that
reads that node's memory, every ``period`` seconds, and prints one JSON line. A
driver per sample would cost a ``ray.init`` each time; this one pays it once.
Its lines are read on the event loop without blocking it, and the status
document only reads the last one. The driver exits when `up` does (its stdin
closes), so a SIGKILLed `up` leaves no driver behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from sparkstack.cluster.ray_node import ray_python
from sparkstack.settings import Settings
from sparkstack.stack.schema import ClusterSpec, Stack
from sparkstack.telemetry.document import NodeStatus

log = logging.getLogger("sparkstack.cluster")

PERIOD_S = 5.0
"""Between samples: Ray's node table changes slowly, and a lost node is caught
within a second by the head's raylet probe (cluster.head), not by this."""
RESTART_S = 5.0
PREFIX = "SPARKSTACK-NODES "
_DRIVER = """
import json, os, sys, threading, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, node_ip, period = sys.argv[1], sys.argv[2], float(sys.argv[3])

def orphaned():  # stdin closes when sparkstack's `up` goes, however it goes
    sys.stdin.read()
    os._exit(0)

threading.Thread(target=orphaned, daemon=True).start()
ray.init(address=address, logging_level="ERROR", log_to_driver=False,
         _node_ip_address=node_ip)

@ray.remote(num_cpus=0)
def memory():
    import psutil
    vm = psutil.virtual_memory()
    return [vm.total, vm.available]

while True:
    nodes = ray.nodes()
    refs = {}
    for n in nodes:
        if n["Alive"]:
            pinned = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            refs[n["NodeID"]] = memory.options(scheduling_strategy=pinned).remote()
    rows = []
    for n in nodes:
        mem = None
        if n["NodeID"] in refs:
            try:
                mem = ray.get(refs[n["NodeID"]], timeout=max(period, 5.0))
            except Exception:
                ray.cancel(refs[n["NodeID"]], force=True)
        rows.append({"address": n["NodeManagerAddress"], "alive": n["Alive"],
                     "resources": n["Resources"], "memory": mem})
    print("SPARKSTACK-NODES " + json.dumps(rows), flush=True)
    time.sleep(period)
"""


@dataclass(frozen=True)
class NodeSample:
    """One node as the driver last saw it."""

    address: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)
    memory_total: int | None = None
    memory_available: int | None = None


def parse_line(line: str) -> list[NodeSample] | None:
    """The samples of one driver line; None for any other line. Ray keeps dead
    nodes in its table: a live entry for the same address wins."""
    if not line.startswith(PREFIX):
        return None
    by_address: dict[str, NodeSample] = {}
    for row in json.loads(line.removeprefix(PREFIX)):
        memory = row.get("memory") or [None, None]
        sample = NodeSample(
            address=str(row["address"]),
            alive=bool(row["alive"]),
            resources={str(k): float(v) for k, v in dict(row["resources"]).items()},
            memory_total=int(memory[0]) if memory[0] is not None else None,
            memory_available=int(memory[1]) if memory[1] is not None else None,
        )
        known = by_address.get(sample.address)
        if known is None or (sample.alive and not known.alive):
            by_address[sample.address] = sample
    return list(by_address.values())


def placements(stack: Stack) -> dict[str, list[str]]:
    """Models by the node they run on: their ``nodes:``, or the head for the rest."""
    assert stack.cluster is not None
    placed: dict[str, list[str]] = {node.name: [] for node in stack.cluster.nodes}
    for spec in stack.models.values():
        for name in spec.nodes or [stack.cluster.head.name]:
            placed[name].append(spec.name)
    return placed


def node_rows(
    cluster: ClusterSpec,
    placed: dict[str, list[str]],
    samples: list[NodeSample] | None,
    sampled_at: float | None,
    lost: dict[str, str],
) -> list[NodeStatus]:
    """Each configured node, in the stack file's order, from the last sample."""
    found = {sample.address: sample for sample in samples or []}
    rows = []
    for node in cluster.nodes:
        sample = found.get(node.address)
        detail = lost.get(node.name)
        if detail is not None or (sample is not None and not sample.alive):
            state = "lost"
            detail = detail or "Ray marked it dead"
        elif sample is not None:
            state = "alive"
        elif samples is None:
            state = "unknown"
        else:
            state, detail = "absent", "has not joined the cluster"
        live = state == "alive"  # a lost node's last figures are stale
        memory = sample.resources.get("memory") if sample else None
        rows.append(
            NodeStatus(
                name=node.name,
                address=node.address,
                head=node is cluster.head,
                state=state,
                cpus=sample.resources.get("CPU", 0.0) if sample else None,
                gpus=sample.resources.get("GPU", 0.0) if sample else None,
                memory_total_bytes=sample.memory_total if sample and live else None,
                memory_available_bytes=sample.memory_available if sample and live else None,
                ray_memory_bytes=int(memory) if memory is not None else None,
                models=list(placed.get(node.name, [])),
                sampled_at=sampled_at if sample else None,
                detail=detail,
            )
        )
    return rows


class NodeMonitor:
    """Keeps the driver running while the stack runs and holds its last sample."""

    def __init__(self, stack: Stack, settings: Settings, period: float = PERIOD_S) -> None:
        assert stack.cluster is not None
        self.cluster = stack.cluster
        self.settings = settings
        self.period = period
        self.placed = placements(stack)
        self.samples: list[NodeSample] | None = None
        self.sampled_at: float | None = None
        self.lost: dict[str, str] = {}

    def nodes(self) -> list[NodeStatus]:
        return node_rows(self.cluster, self.placed, self.samples, self.sampled_at, self.lost)

    def mark(self, node: str, why: str | None) -> None:
        """The head's raylet probe: lost (with why) or answering again (None)."""
        if why is None:
            self.lost.pop(node, None)
        else:
            self.lost[node] = f"lost ({why})"

    def argv(self) -> list[str]:
        head = self.cluster.head
        return [
            str(ray_python(self.settings)), "-c", _DRIVER,
            f"{head.address}:{self.cluster.ray_port}", head.address, f"{self.period:g}",
        ]  # fmt: skip

    async def run(self) -> None:
        """Sample until cancelled; a driver that ends is started again. Nothing here
        may stop the stack: the nodes then show their last sample."""
        while True:
            try:
                await self._drive()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("the cluster's node sampler failed: %r", exc)
            await asyncio.sleep(RESTART_S)

    async def _drive(self) -> None:
        log_path = self.settings.log_dir / "ray-nodes.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as errors:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
            )
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                samples = parse_line(raw.decode(errors="replace"))
                if samples is not None:
                    self.samples, self.sampled_at = samples, time.time()
            log.warning("the cluster's node sampler ended (%s); see %s",
                        await proc.wait(), log_path)  # fmt: skip
        finally:
            if proc.returncode is None:
                proc.kill()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(proc.wait())
