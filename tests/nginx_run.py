"""The Debian nginx run unprivileged for tests and benchmarks: its own prefix,
main config and temp folders under a scratch folder, the site files under test
included from ``sites/`` as /etc/nginx/sites-enabled would be."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import stop_process

MAIN_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/sites/*;
}}
"""


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def write_config(root: Path, sites: dict[str, str]) -> Path:
    """nginx.conf under ``root`` including each of ``sites`` (file name -> text)."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "sites"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, text in sites.items():
        (root / "sites" / name).write_text(text)
    conf = root / "nginx.conf"
    conf.write_text(MAIN_CONF.format(root=root))
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on ``conf``."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@contextmanager
def nginx_running(conf: Path, probe_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """nginx with ``conf`` until the block ends; ready once ``probe_url`` answers."""
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(conf.parent), "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(probe_url, timeout=2):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (conf.parent / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx did not serve {probe_url}: {exc}\n{log}") from exc
                time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc, timeout=10)
