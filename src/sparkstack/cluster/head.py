"""The head's side of a cluster, run by `sparkstack up`: check this host's fast
link, start Ray's head, wait until every node joined with its GPUs (naming the
one that did not, and whether its address answers at all), and watch the nodes
while the stack runs: a node whose raylet stops answering is lost, and the
models that span it are failed with a ``node_lost`` event."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sparkstack.cluster.checks import answers, check_interface, check_local_address
from sparkstack.cluster.ray_node import head_argv, options_for, ray_env
from sparkstack.cluster.ray_state import missing_nodes, ray_nodes
from sparkstack.errors import ClusterError
from sparkstack.settings import Settings
from sparkstack.stack.schema import ClusterSpec, Stack
from sparkstack.supervisor import Supervisor
from sparkstack.supervisor.process import ManagedProcess

log = logging.getLogger("sparkstack.cluster")

HEAD_CPUS_ENV = "SPARKSTACK_RAY_NUM_CPUS"
"""CPUs the head offers Ray (default: Ray's own count); tests on small hosts set 1."""
WATCH_PERIOD = 0.5
HEAD_START_TIMEOUT = 120.0
NodeChange = Callable[[str, str | None], Awaitable[None]]
"""(node, why it is lost) or (node, None) once it answers again."""


def spanned_nodes(stack: Stack) -> list[str]:
    """Every node some model spans, head first, in cluster order."""
    assert stack.cluster is not None
    wanted = {name for spec in stack.models.values() for name in spec.nodes}
    return [n.name for n in stack.cluster.nodes if n.name in wanted or n is stack.cluster.head]


def head_address(cluster: ClusterSpec) -> str:
    return f"{cluster.head.address}:{cluster.ray_port}"


def preflight(cluster: ClusterSpec) -> None:
    """Before Ray starts: this host is the head, and its fast link exists."""
    head = cluster.head
    check_interface(head.interface, f"cluster.nodes.{head.name}.interface")
    check_local_address(head)


class RayHead:
    """Ray's head node as a child of `sparkstack up`, in its own process group."""

    def __init__(self, stack: Stack, settings: Settings) -> None:
        assert stack.cluster is not None
        self.stack = stack
        self.cluster = stack.cluster
        self.settings = settings
        cpus = os.environ.get(HEAD_CPUS_ENV)
        # Ray's socket paths must stay under 107 bytes: a short folder of its own.
        self.temp_dir = Path(tempfile.gettempdir()) / f"ssray-{os.getpid()}"
        self.options = options_for(
            self.cluster, self.cluster.head.name, int(cpus) if cpus else None, self.temp_dir
        )
        self.env = ray_env(self.options)
        self.process = ManagedProcess(
            "ray-head",
            head_argv(settings, self.options, self.cluster.ray_port),
            self.env,
            settings.log_dir / "ray-head.log",
        )

    async def start(self) -> None:
        preflight(self.cluster)
        # Engines started by this process (vLLM's driver) join the same cluster.
        os.environ.update(self.env)
        os.environ["RAY_ADDRESS"] = head_address(self.cluster)
        log.info("starting Ray head at %s; log: %s", head_address(self.cluster),
                 self.process.log_path)  # fmt: skip
        await self.process.start()

    async def wait_for_nodes(self) -> None:
        """Every node a model spans has joined with its GPUs, or a ClusterError that
        names each missing node and whether anything answers at its address. The
        nodes get ``join_timeout`` from the moment the head's own Ray answers."""
        await self._wait_head()
        wanted = spanned_nodes(self.stack)
        deadline = time.monotonic() + self.cluster.join_timeout
        while True:
            try:
                nodes = await asyncio.to_thread(
                    ray_nodes, self.settings, head_address(self.cluster)
                )
            except ClusterError as exc:
                problems = [str(exc)]
            else:
                problems = missing_nodes(self.cluster, wanted, nodes)
                if not problems:
                    log.info("cluster ready: %s", ", ".join(wanted))
                    return
            if time.monotonic() >= deadline:
                raise ClusterError(self._not_joined(problems))
            await asyncio.sleep(1.0)

    async def _wait_head(self) -> None:
        head = self.cluster.head
        deadline = time.monotonic() + HEAD_START_TIMEOUT
        while await asyncio.to_thread(answers, head.address, self.cluster.ray_port, 1.0):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise ClusterError(
                    f"Ray's head did not come up at {head_address(self.cluster)} "
                    f"(exit status {self.process.returncode}); see {self.process.log_path}"
                )
            await asyncio.sleep(0.5)

    def _not_joined(self, problems: list[str]) -> str:
        details = []
        for problem in problems:
            name = problem.split(" ", 1)[0]
            if any(n.name == name for n in self.cluster.nodes) and "not joined" in problem:
                node = self.cluster.node(name)
                why = answers(node.address, self.cluster.node_manager_port)
                if why is not None:
                    problem += (
                        f"; nothing answers at {node.address}:{self.cluster.node_manager_port}"
                        f" ({why})"
                    )
            details.append(problem)
        return (
            f"the Ray cluster is incomplete after {self.cluster.join_timeout:g}s: "
            f"{'; '.join(details)}. On each worker run `sparkstack node join "
            f"{head_address(self.cluster)} --interface IFACE`, and check cluster.nodes "
            "addresses; no model was started"
        )

    async def watch(self, on_change: NodeChange) -> None:
        """Probe each worker's raylet port; a node that stops answering is lost once."""
        workers = [n for n in self.cluster.nodes if n is not self.cluster.head]
        lost: set[str] = set()
        port = self.cluster.node_manager_port
        while True:
            for node in workers:
                why = await asyncio.to_thread(answers, node.address, port, 1.0)
                if why is not None and node.name not in lost:
                    lost.add(node.name)
                    await on_change(node.name, f"{node.address}:{port} {why}")
                elif why is None and node.name in lost:
                    lost.discard(node.name)
                    await on_change(node.name, None)
            await asyncio.sleep(WATCH_PERIOD)

    async def stop(self) -> str:
        """Stop Ray's head (its whole process group) and remove its session folder."""
        outcome = await self.process.stop(15.0)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return outcome


async def start_cluster(
    stack: Stack, settings: Settings, on_started: Callable[[RayHead], None] | None = None
) -> RayHead | None:
    """The stack's Ray head, started with every node joined; None without cluster:.
    ``on_started`` hears of the head as soon as its process runs (the run file
    records it, so a SIGKILLed `up` does not leave it behind)."""
    if stack.cluster is None:
        return None
    head = RayHead(stack, settings)
    try:
        await head.start()
        if on_started is not None:
            on_started(head)
        await head.wait_for_nodes()
    except BaseException:
        await head.stop()
        raise
    return head


def fail_spanning(supervisor: Supervisor) -> NodeChange:
    """What a lost node does: every model spanning it is failed (event node_lost)
    and held back until the node answers again; models on other nodes keep serving."""

    async def changed(node: str, why: str | None) -> None:
        for runtime in supervisor.models.values():
            if node not in runtime.spec.nodes:
                continue
            if why is None:
                log.info("cluster node %s answers again; %s may start", node, runtime.name)
                supervisor.release(runtime.name)
            else:
                reason = f"cluster node {node} lost ({why})"
                await supervisor.fail(runtime.name, reason, "node_lost")

    return changed
