"""Ray's node table, read through Ray's own Python API in vLLM's venv (a short
driver process: sparkstack's venv does not carry Ray), and the check that every
node a spanning model needs has joined with the resources it was given."""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import dataclass, field

from sparkstack.cluster.ray_node import ray_python
from sparkstack.errors import ClusterError
from sparkstack.settings import Settings
from sparkstack.stack.schema import ClusterSpec

_NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False,
         _node_ip_address=sys.argv[2])
print("SPARKSTACK-NODES " + json.dumps([
    {"address": n["NodeManagerAddress"], "alive": n["Alive"], "resources": n["Resources"]}
    for n in ray.nodes()]))
"""
QUERY_TIMEOUT = 90.0


@dataclass(frozen=True)
class RayNode:
    address: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def gpus(self) -> float:
        return self.resources.get("GPU", 0.0)

    @property
    def cpus(self) -> float:
        return self.resources.get("CPU", 0.0)

    @property
    def memory_bytes(self) -> float:
        return self.resources.get("memory", 0.0)


def ray_nodes(settings: Settings, address: str, timeout: float = QUERY_TIMEOUT) -> list[RayNode]:
    """The cluster's nodes as Ray's GCS at ``address`` (HOST:PORT) knows them."""
    try:
        result = subprocess.run(
            [str(ray_python(settings)), "-c", _NODES_SCRIPT, address, _local_ip_toward(address)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"cannot read Ray's node table at {address}: {exc}") from exc
    for line in result.stdout.splitlines():
        if line.startswith("SPARKSTACK-NODES "):
            rows = json.loads(line.removeprefix("SPARKSTACK-NODES "))
            return [RayNode(r["address"], bool(r["alive"]), dict(r["resources"])) for r in rows]
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    raise ClusterError(
        f"no Ray cluster answers at {address} ({' | '.join(tail)}); start it with `sparkstack "
        "up` on the head"
    )


def _local_ip_toward(address: str) -> str:
    """This host's address on the route to ``address`` (Ray's driver must use the
    node's own IP; its default guess asks a route to 8.8.8.8, absent on a private link)."""
    host = address.rpartition(":")[0] or address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
        except OSError as exc:
            raise ClusterError(f"no route from this host to the head {host}: {exc}") from exc
        return str(probe.getsockname()[0])


def missing_nodes(cluster: ClusterSpec, wanted: list[str], nodes: list[RayNode]) -> list[str]:
    """Why each of ``wanted`` is not usable yet: absent, dead, or short of GPUs."""
    alive = {n.address: n for n in nodes if n.alive}
    problems = []
    for name in wanted:
        spec = cluster.node(name)
        found = alive.get(spec.address)
        if found is None:
            problems.append(f"{name} ({spec.address}) has not joined")
        elif found.gpus < spec.gpus:
            problems.append(f"{name} ({spec.address}) offers {found.gpus:g} GPUs, not {spec.gpus}")
    return problems
