"""The `sparkstack node` command group: `node join HEAD` makes this host a worker
of the head's Ray cluster (Ray's own `ray start --address`, with the fast-link
environment), `node status` shows the cluster's nodes, their resources, and which
models span them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from sparkstack.cli.errors import fail as _fail
from sparkstack.errors import ClusterError, SparkstackError


@click.group()
def node() -> None:
    """Cluster nodes (several machines on Ray)."""


@node.command()
@click.argument("head")
@click.option("--interface", required=True, help="This host's fast-link interface (NCCL/Gloo).")
@click.option("--hca", help="RoCE HCA for NCCL_IB_HCA (e.g. mlx5_0).")
@click.option("--gpus", default=1, show_default=True, help="GPUs this node offers Ray.")
@click.option("--num-cpus", type=int, help="CPUs this node offers Ray (default: all).")
@click.option("--ray-port", default=6379, show_default=True, help="Head port if HEAD has none.")
@click.option("--node-manager-port", default=6380, show_default=True, help="This raylet's port.")
@click.option("--memory-usage-threshold", default=0.98, show_default=True,
              help="RAY_memory_usage_threshold (unified memory needs it high).")  # fmt: skip
def join(
    head: str, interface: str, hca: str | None, gpus: int, num_cpus: int | None, ray_port: int,
    node_manager_port: int, memory_usage_threshold: float,
) -> None:  # fmt: skip
    """Join the Ray cluster whose head is HEAD (HOST[:PORT]); runs until stopped."""
    from sparkstack.cluster.checks import answers, check_interface
    from sparkstack.cluster.ray_node import RayNodeOptions, ray_env, split_head, worker_argv
    from sparkstack.settings import Settings

    try:
        check_interface(interface, "--interface")
        address = _ipv4_of(interface)
        host, port = split_head(head, ray_port)
        why = answers(host, port)
        if why is not None:
            raise ClusterError(
                f"the head's Ray at {host}:{port} does not answer ({why}); start `sparkstack "
                "up` on the head first, and check the address and that this host reaches it "
                f"over {interface}"
            )
        options = RayNodeOptions(
            address=address, interface=interface, hca=hca, num_gpus=gpus, num_cpus=num_cpus,
            node_manager_port=node_manager_port, memory_usage_threshold=memory_usage_threshold,
        )  # fmt: skip
        argv = worker_argv(Settings.from_env(), options, f"{host}:{port}")
    except SparkstackError as exc:
        _fail(exc)
    env = {**os.environ, **ray_env(options)}
    click.echo(f"joining {host}:{port} as {address} over {interface}: {' '.join(argv)}", err=True)
    os.execve(argv[0], argv, env)  # Ray's node is this process: stopping it leaves


def _ipv4_of(interface: str) -> str:
    import psutil

    for addr in psutil.net_if_addrs().get(interface, []):
        if addr.family == socket.AF_INET:
            return str(addr.address)
    raise ClusterError(f"--interface {interface} has no IPv4 address; give it one first")


@node.command()
@click.argument("head", required=False)
@click.option("--stack", "stack_file", type=click.Path(path_type=Path),
              help="Stack file: names the nodes and the models on them.")  # fmt: skip
def status(head: str | None, stack_file: Path | None) -> None:
    """The cluster's nodes, their resources, and the models that span them."""
    from sparkstack.cluster.ray_state import ray_nodes
    from sparkstack.settings import Settings
    from sparkstack.stack import load_stack

    try:
        stack = load_stack(stack_file) if stack_file else None
        cluster = stack.cluster if stack else None
        if head is None:
            head = os.environ.get("RAY_ADDRESS") or (
                f"{cluster.head.address}:{cluster.ray_port}" if cluster else None
            )
        if head is None:
            raise ClusterError("name the head (HOST:PORT), or give --stack with a cluster:")
        nodes = ray_nodes(Settings.from_env(), head)
    except SparkstackError as exc:
        _fail(exc)
    names = {n.address: n.name for n in cluster.nodes} if cluster else {}
    click.echo(
        f"{'NODE':<12} {'ADDRESS':<16} {'STATE':<6} {'CPU':>5} {'GPU':>5} {'MEMORY':>11}  MODELS"
    )
    for found in sorted(nodes, key=lambda n: (not n.alive, n.address)):
        name = names.get(found.address, "-")
        models = [
            spec.name for spec in (stack.models.values() if stack else [])
            if name in spec.nodes or (not spec.nodes and cluster and name == cluster.head.name)
        ]  # fmt: skip
        click.echo(
            f"{name:<12} {found.address:<16} {'alive' if found.alive else 'dead':<6} "
            f"{found.cpus:>5g} {found.gpus:>5g} {found.memory_bytes / 2**30:>7.2f} GiB  "
            f"{', '.join(models) or '-'}"
        )
    if cluster:
        joined = {n.address for n in nodes if n.alive}
        for spec in cluster.nodes:
            if spec.address not in joined:
                click.echo(f"{spec.name:<12} {spec.address:<16} absent (not joined)")
