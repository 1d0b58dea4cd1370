"""`sparkstack top` and `sparkstack footprints`: watching a running stack."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from sparkstack.env_file import load_env_file
from sparkstack.errors import SparkstackError
from sparkstack.settings import Settings
from sparkstack.supervisor.run_file import RunFile
from sparkstack.telemetry.footprints import read_footprints, render_table, write_csv
from sparkstack.telemetry.top import run_top


def _fail(exc: SparkstackError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@click.command()
@click.argument("url", required=False)
@click.option("--key", help="Admin key [default: $SPARKSTACK_ADMIN_KEY].")
def top(url: str | None, key: str | None) -> None:
    """A live view of a gateway (this machine's stack without URL): memory, models,
    tokens/s, events; keys load/unload/sleep/wake the selected model."""

    load_env_file(Path.cwd() / ".env")
    if url is None:
        run = RunFile.read(Settings.from_env().run_file)
        url = run.gateway_url if run else "http://127.0.0.1:8080"
    elif "://" not in url:
        url = f"http://{url}"
    try:
        asyncio.run(run_top(url, key or os.environ.get("SPARKSTACK_ADMIN_KEY")))
    except SparkstackError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--csv", "as_csv", is_flag=True, help="Print the CSV rows as recorded.")
@click.option("--model", help="Only this model's rows.")
def footprints(as_csv: bool, model: str | None) -> None:
    """Measured footprints the supervisor recorded after each warm-up, beside the plan."""

    path = Settings.from_env().footprints_file
    try:
        rows = read_footprints(path, model)
    except SparkstackError as exc:
        _fail(exc)
    click.echo(write_csv(rows) if as_csv else render_table(rows), nl=as_csv is False)
