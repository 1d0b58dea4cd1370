"""One Ray node started through Ray's own CLI (``ray start --head`` on the head,
``ray start --address`` on a worker, always ``--block`` so the node lives exactly
as long as the process sparkstack started), with the environment a multi-node
vLLM needs on every node: the fast link for NCCL and Gloo, the RoCE HCA, and
Ray's memory monitor tuned for unified memory.

Ray comes from vLLM's own venv (``SPARKSTACK_HOME/engines/vllm``): the cluster
and the engine must run the same Ray version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparkstack.errors import ClusterError
from sparkstack.settings import Settings
from sparkstack.stack.schema import ClusterSpec

RAY_VENV = "vllm"


@dataclass(frozen=True)
class RayNodeOptions:
    """What one ``ray start`` needs: this node's fast link and what it offers Ray."""

    address: str
    interface: str
    hca: str | None = None
    num_gpus: int = 1
    num_cpus: int | None = None
    node_manager_port: int = 6380
    memory_usage_threshold: float = 0.98
    memory_monitor_refresh_ms: int = 0
    temp_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


def options_for(
    cluster: ClusterSpec, name: str, num_cpus: int | None, temp_dir: Path | None
) -> RayNodeOptions:
    node = cluster.node(name)
    return RayNodeOptions(
        address=node.address,
        interface=node.interface,
        hca=node.hca,
        num_gpus=node.gpus,
        num_cpus=num_cpus,
        node_manager_port=cluster.node_manager_port,
        memory_usage_threshold=cluster.memory_usage_threshold,
        memory_monitor_refresh_ms=cluster.memory_monitor_refresh_ms,
        temp_dir=temp_dir,
    )


def ray_env(options: RayNodeOptions) -> dict[str, str]:
    """Inherited by the raylet and every Ray worker, so by vLLM's workers too."""
    env = {
        "NCCL_SOCKET_IFNAME": options.interface,
        "GLOO_SOCKET_IFNAME": options.interface,
        # vLLM's own choice of the node IP (VLLM_HOST_IP) must match Ray's.
        "VLLM_HOST_IP": options.address,
        "RAY_memory_usage_threshold": f"{options.memory_usage_threshold:g}",
        "RAY_memory_monitor_refresh_ms": str(options.memory_monitor_refresh_ms),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if options.hca:
        env["NCCL_IB_HCA"] = options.hca
    return {**env, **options.extra_env}


def ray_binary(settings: Settings) -> Path:
    ray = settings.engines_dir / RAY_VENV / "bin" / "ray"
    if not ray.exists():
        raise ClusterError(
            f"Ray is not installed in vLLM's venv ({ray} is missing); run scripts/install.sh "
            "(it installs ray there, the version vLLM uses across nodes)"
        )
    return ray


def ray_python(settings: Settings) -> Path:
    return settings.engines_dir / RAY_VENV / "bin" / "python"


def _common(options: RayNodeOptions) -> list[str]:
    argv = [
        "--node-ip-address", options.address,
        "--node-manager-port", str(options.node_manager_port),
        "--num-gpus", str(options.num_gpus),
        "--disable-usage-stats",
        "--block",
    ]  # fmt: skip
    if options.num_cpus is not None:
        argv += ["--num-cpus", str(options.num_cpus)]
    if options.temp_dir is not None:
        argv += ["--temp-dir", str(options.temp_dir)]
    return argv


def head_argv(settings: Settings, options: RayNodeOptions, port: int) -> list[str]:
    return [
        str(ray_binary(settings)), "start", "--head",
        "--port", str(port),
        "--include-dashboard", "false",
        *_common(options),
    ]  # fmt: skip


def worker_argv(settings: Settings, options: RayNodeOptions, head: str) -> list[str]:
    return [str(ray_binary(settings)), "start", "--address", head, *_common(options)]


def split_head(head: str, default_port: int) -> tuple[str, int]:
    """``HOST[:PORT]`` of the head's Ray, the port defaulting to ``default_port``."""
    host, sep, port = head.rpartition(":")
    if not sep:
        return head, default_port
    if not port.isdigit() or not host:
        raise ClusterError(f"head {head!r} is not HOST or HOST:PORT (e.g. 10.0.0.1:6379)")
    return host, int(port)
