"""`sparkstack export ...`: configuration for other tools (Prometheus, Grafana)
and deployment files for a stack (nginx, compose, systemd), printed or written to
a file. Each kind is its own command function on the ``export`` group."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from functools import partial
from pathlib import Path

import click

from sparkstack.deploy.compose import DEFAULT_GATEWAY_IMAGE, ComposeOptions, compose_bundle
from sparkstack.deploy.nginx import nginx_site
from sparkstack.deploy.systemd import UnitOptions, systemd_unit
from sparkstack.errors import SparkstackError
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import build_plan
from sparkstack.settings import Settings
from sparkstack.stack import Stack, load_stack
from sparkstack.stack.demo import demo_stack
from sparkstack.supervisor.run_file import RunFile
from sparkstack.telemetry.grafana import dashboard_json
from sparkstack.telemetry.prometheus_config import scrape_config

STACK_ARG = click.argument("stack_file", required=False, type=click.Path(path_type=Path))
OUTPUT_OPT = click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write to this file, not stdout."
)


@click.group()
def export() -> None:
    """Configuration for other tools (Prometheus, Grafana) and deployment files for a
    stack (nginx, compose, systemd)."""


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    if "credentials:" in text:
        out.chmod(0o600)
    click.echo(f"wrote {out}", err=True)


def _gateway_url() -> str:

    run = RunFile.read(Settings.from_env().run_file)
    return run.gateway_url if run else "http://127.0.0.1:8080"


@export.command("prometheus")
@click.option(
    "--url", help="The gateway's URL [default: the running stack's, or http://127.0.0.1:8080]."
)
@click.option(
    "--key",
    help="API key Prometheus sends [default: $SPARKSTACK_API_KEY, then $SPARKSTACK_ADMIN_KEY].",
)
@click.option("--key-file", help="Have Prometheus read the key from this file instead.")
@click.option("--job", default="sparkstack", show_default=True)
@click.option("--interval", default="5s", show_default=True, help="Scrape interval.")
@click.option("--out", type=click.Path(path_type=Path), help="Write here (mode 0600).")
def export_prometheus(
    url: str | None,
    key: str | None,
    key_file: str | None,
    job: str,
    interval: str,
    out: Path | None,
) -> None:
    """A Prometheus scrape config for the gateway's /metrics, with the key."""

    key = key or os.environ.get("SPARKSTACK_API_KEY") or os.environ.get("SPARKSTACK_ADMIN_KEY")
    try:
        _write(scrape_config(url or _gateway_url(), key, key_file, job, interval), out)
    except SparkstackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@export.command("grafana")
@click.option("--title", default="sparkstack", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def export_grafana(title: str, out: Path | None) -> None:
    """A Grafana dashboard (import it; pick your Prometheus data source)."""

    _write(dashboard_json(title), out)


def load_for_export(stack_file: Path | None) -> tuple[Stack, str]:
    """The stack (the demo stack without a file) and its name for labels."""
    if stack_file is None:
        return demo_stack(), "demo"
    return load_stack(stack_file), stack_file.stem


def emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


def fail(exc: SparkstackError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@export.command("nginx")
@STACK_ARG
@click.option("--server-name", required=True, help="The public host name (inference.example.com).")
@click.option("--upstream-ip", help="The gateway machine's IP as nginx reaches it (default: "
              "the gateway's listen address; 127.0.0.1 for 0.0.0.0).")  # fmt: skip
@click.option("--listen", default="80", show_default=True, help="nginx's listen (port or ip:port).")
@OUTPUT_OPT
def export_nginx(
    stack_file: Path | None,
    server_name: str,
    upstream_ip: str | None,
    listen: str,
    output: Path | None,
) -> None:
    """An nginx site in front of the gateway: streaming unbuffered, 3600 s timeouts, the
    stack's body limit, keep-alive upstream by IP, HTTP first for `certbot --nginx`."""

    try:
        stack, name = load_for_export(stack_file)
        emit(nginx_site(stack, name, server_name, upstream_ip, listen), output)
    except SparkstackError as exc:
        fail(exc)


@export.command("systemd")
@STACK_ARG
@click.option("--user", help="Run as this user (User=); default: the unit's default (root).")
@OUTPUT_OPT
def export_systemd(stack_file: Path | None, user: str | None, output: Path | None) -> None:
    """A systemd unit running `sparkstack up STACK_FILE`: restart on failure, working
    directory with the .env, `sparkstack down` on stop."""

    if stack_file is None:
        fail(SparkstackError("export systemd needs the stack file the service will run"))
        return
    exe = shutil.which("sparkstack") or str(Path(sys.executable).parent / "sparkstack")
    try:
        stack = load_stack(stack_file)
        options = UnitOptions(stack_file=stack_file, sparkstack=Path(exe).absolute(), user=user)
        emit(systemd_unit(stack, options), output)
    except SparkstackError as exc:
        fail(exc)


@export.command("compose")
@STACK_ARG
@click.option(
    "--out-dir", type=click.Path(path_type=Path), default=Path("sparkstack-compose"),
    show_default=True, help="Folder for compose.yaml and the gateway's stack.compose.yaml.",
)  # fmt: skip
@click.option("--engine-port", default=8100, show_default=True, help="The first engine's port.")
@click.option("--gateway-image", help="Image holding sparkstack for the gateway service.")
@click.option(
    "--gateway-command", default="sparkstack", show_default=True,
    help="The sparkstack program inside the gateway image (e.g. '/venv/bin/python -m sparkstack').",
)  # fmt: skip
def export_compose(
    stack_file: Path | None,
    out_dir: Path,
    engine_port: int,
    gateway_image: str | None,
    gateway_command: str,
) -> None:
    """A compose project: the gateway and every engine in its container, the planned flags
    in each service's command, the HF cache mounted, secrets from .env, host network."""

    try:
        stack, name = load_for_export(stack_file)
        plan = build_plan(stack, inspect=partial(inspect_source, offline=True))
        options = ComposeOptions(
            stack_name=name, engine_port=engine_port,
            gateway_image=gateway_image or DEFAULT_GATEWAY_IMAGE,
            cuda=plan.machine.device == "cuda", gateway_command=tuple(shlex.split(gateway_command)),
        )  # fmt: skip
        bundle = compose_bundle(stack, plan, Settings.from_env(), options)
    except SparkstackError as exc:
        fail(exc)
        return
    for relative, text in bundle.files.items():
        emit(text, out_dir / relative)
