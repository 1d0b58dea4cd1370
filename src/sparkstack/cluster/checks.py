"""Checks that run before any model starts: the fast-link interface exists on this
host, a node's address answers, and which cluster node this host is."""

from __future__ import annotations

import socket

import psutil

from sparkstack.errors import ClusterError
from sparkstack.stack.schema import ClusterNode, ClusterSpec

CONNECT_TIMEOUT = 2.0


def check_interface(interface: str, where: str) -> None:
    """The interface NCCL and Gloo are pinned to must exist here, or they fail late."""
    try:
        socket.if_nametoindex(interface)
    except OSError:
        present = ", ".join(sorted(psutil.net_if_addrs())) or "none"
        raise ClusterError(
            f"{where}: network interface {interface!r} does not exist on this host (it has: "
            f"{present}); set the interface of the fast link between the nodes"
        ) from None


def local_addresses() -> set[str]:
    return {
        addr.address
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family in (socket.AF_INET, socket.AF_INET6)
    }


def check_local_address(node: ClusterNode) -> None:
    """Ray binds the node's address: it must be one of this host's."""
    if node.address not in local_addresses():
        raise ClusterError(
            f"cluster node {node.name}: address {node.address} is not an address of this host "
            f"(it has: {', '.join(sorted(local_addresses()))}); fix cluster.nodes.{node.name}"
            ".address"
        )


def answers(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return exc.strerror or str(exc)


def this_node(cluster: ClusterSpec) -> ClusterNode | None:
    """The cluster node whose address belongs to this host."""
    mine = local_addresses()
    return next((node for node in cluster.nodes if node.address in mine), None)
