"""Two "hosts" on one machine for the cluster tests: two network namespaces joined
by a veth pair, with private addresses that exist only inside them. Everything
started inside is killed and both namespaces are deleted on the way out, even
when the test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

HEAD_IP, WORKER_IP = "10.77.0.1", "10.77.0.2"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class Host:
    netns: str
    interface: str
    address: str

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def kill_all(self, sig: signal.Signals = signal.SIGKILL) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def curl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv("curl", "-sS", "-m", str(int(timeout)), *args),
                              capture_output=True, text=True, timeout=timeout + 5)  # fmt: skip


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """(head, worker): namespaces ss14a-PID / ss14b-PID, veth ss14a <-> ss14b,
    10.77.0.1/24 and 10.77.0.2/24."""
    tag = str(os.getpid())
    head = Host(f"ss14a-{tag}", "ss14a", HEAD_IP)
    worker = Host(f"ss14b-{tag}", "ss14b", WORKER_IP)
    try:
        for host in (head, worker):
            ip("netns", "add", host.netns)
            ip("-n", host.netns, "link", "set", "lo", "up")
        ip("link", "add", head.interface, "netns", head.netns, "type", "veth",
           "peer", "name", worker.interface, "netns", worker.netns)  # fmt: skip
        for host in (head, worker):
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.interface)
            ip("-n", host.netns, "link", "set", host.interface, "up")
        yield head, worker
    finally:
        for host in (head, worker):
            host.kill_all(signal.SIGTERM)
        time.sleep(1)
        for host in (head, worker):
            host.kill_all()
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
