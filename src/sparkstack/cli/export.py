"""`sparkstack export ...`: configuration for other tools, written to stdout or
--out. Each tool is its own subcommand of the ``export`` group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sparkstack.errors import SparkstackError
from sparkstack.settings import Settings
from sparkstack.supervisor.run_file import RunFile
from sparkstack.telemetry.grafana import dashboard_json
from sparkstack.telemetry.prometheus_config import scrape_config


@click.group()
def export() -> None:
    """Configuration for other tools (Prometheus, Grafana, ...)."""


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
