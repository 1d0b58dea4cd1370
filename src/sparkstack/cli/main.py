"""Entry point of the `sparkstack` command: a thin adapter that validates input
and calls the Python API; errors leave through the one boundary in
``cli/errors.py`` (exit codes 1 error, 2 usage, 3 does not fit)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import click
from pydantic import ValidationError

from sparkstack import __version__
from sparkstack.cli.bench import bench
from sparkstack.cli.deploy import doctor, pull
from sparkstack.cli.errors import EXIT_DOES_NOT_FIT, run
from sparkstack.cli.export import export
from sparkstack.cli.node import node
from sparkstack.cli.watch import footprints, top
from sparkstack.containers.dry_run import render_dry_run
from sparkstack.containers.preflight import check_containers
from sparkstack.deploy.weights import require_weights
from sparkstack.engines.registry import known_engines
from sparkstack.env_file import load_env_file
from sparkstack.errors import DoesNotFitError, SparkstackError
from sparkstack.gateway.keys import KeyStore
from sparkstack.machine import resolve_machine
from sparkstack.modelfacts.inspect import inspect_source
from sparkstack.planner.plan import build_plan
from sparkstack.planner.render import render_facts, render_plan
from sparkstack.serve import install_uvloop, serve
from sparkstack.settings import Settings
from sparkstack.shutdown import bring_down
from sparkstack.stack import Stack, load_stack
from sparkstack.stack.demo import demo_stack
from sparkstack.supervisor.run_file import RunFile
from sparkstack.telemetry.document import NodeStatus
from sparkstack.telemetry.nodes_view import node_lines


def _load(stack_file: Path | None, listen: str | None) -> Stack:
    stack = load_stack(stack_file, known_engines()) if stack_file else demo_stack()
    if listen:
        try:
            gateway = stack.gateway.model_validate({**stack.gateway.model_dump(), "listen": listen})
        except ValidationError as exc:
            raise click.BadParameter(exc.errors()[0]["msg"], param_hint="--listen") from exc
        stack = stack.model_copy(update={"gateway": gateway})
    return stack


@click.group()
@click.version_option(__version__, prog_name="sparkstack")
def cli() -> None:
    """Several local LLMs behind one safe, fast, observable OpenAI-compatible endpoint."""


@cli.command()
@click.argument("stack_file", required=False, type=click.Path(path_type=Path))
@click.option("--listen", help="host:port for the gateway (overrides gateway.listen).")
@click.option("--dry-run", is_flag=True, help="Print every command and file; start nothing.")
@click.option(
    "--watch", is_flag=True, help="Reload whenever STACK_FILE changes (see `sparkstack reload`)."
)
def up(stack_file: Path | None, listen: str | None, dry_run: bool, watch: bool) -> None:
    """Start the gateway and the models of STACK_FILE (the demo stack without one).
    Exit code 3 when the stack does not fit this machine. SIGHUP (or `sparkstack
    reload`) re-reads STACK_FILE and applies what changed."""
    if watch and stack_file is None:
        raise click.UsageError("--watch needs a STACK_FILE to watch (the demo stack has none)")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for folder in {Path.cwd(), (stack_file or Path.cwd()).resolve().parent}:
        load_env_file(folder / ".env")
    stack = _load(stack_file, listen)
    try:
        plan = build_plan(stack)
    except SparkstackError:
        # a plan that could not read a model's files: missing weights offline say so
        # with the `pull` to run (the catalog plans some models without their files)
        require_weights(stack, stack_file)
        raise
    if not plan.fits:
        click.echo(render_plan(plan), err=True)
        raise DoesNotFitError(
            "the stack does not fit this machine (plan above); nothing was started"
        )
    settings = Settings.from_env()
    cuda = plan.machine.device == "cuda"
    if dry_run:
        click.echo(render_dry_run(stack, plan, settings, cuda))
        return
    require_weights(stack, stack_file)
    check_containers(stack, settings, cuda)
    for model in plan.models:
        for warning in model.warnings:
            logging.getLogger("sparkstack").warning("%s: %s", model.name, warning)
    install_uvloop()
    source = partial(_load, stack_file, listen) if stack_file else None
    asyncio.run(serve(stack, settings, plan, source, stack_file if watch else None))


@cli.command()
@click.option(
    "--timeout", default=900.0, show_default=True,
    help="Seconds to wait for the reload (drains and starts included).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reload(timeout: float, as_json: bool) -> None:
    """Re-read the running stack's file and apply what changed: unchanged models keep
    serving, changed ones restart once drained, removed ones stop, added ones start.
    A file that does not load or fit is rejected and nothing changes (exit code 1)."""
    data = _gateway_get("/admin/reload", method="POST", timeout=timeout)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(str(data.get("summary", "")))
    if not data.get("applied"):
        sys.exit(1)


@cli.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@click.option("--offline", is_flag=True, help="Never ask the hub; cache and catalog only.")
def inspect(source: str, as_json: bool, offline: bool) -> None:
    """Model facts of SOURCE: a HF folder, a .gguf file, or a HF repo id."""
    facts = inspect_source(source, offline=offline)
    click.echo(facts.model_dump_json(indent=2) if as_json else render_facts(facts))


@cli.command()
@click.argument("stack_file", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (stable schema).")
@click.option("--explain", is_flag=True, help="Show how each number is derived.")
@click.option("--machine", "machine_name", help="Plan for this profile instead (dgx-spark).")
@click.option("--offline", is_flag=True, help="Never ask the hub; cache and catalog only.")
def plan(
    stack_file: Path | None, as_json: bool, explain: bool, machine_name: str | None, offline: bool
) -> None:
    """Will STACK_FILE fit, and with which engine flags? Starts nothing.
    Exit code 0 when it fits, 3 when it does not."""
    stack = _load(stack_file, None)
    machine = resolve_machine(machine_name) if machine_name else None
    result = build_plan(stack, machine, partial(inspect_source, offline=offline))
    click.echo(result.model_dump_json(indent=2) if as_json else render_plan(result, explain))
    if not result.fits:
        sys.exit(EXIT_DOES_NOT_FIT)


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for `up`.")
def down(timeout: float) -> None:
    """Stop the running stack and every engine it started."""
    report = bring_down(Settings.from_env(), timeout=timeout)
    if not report.found:
        click.echo("no stack is running")
        return
    if report.stale_up:
        click.echo("the recorded `sparkstack up` is not running any more (its pid is gone or "
                   "belongs to another process now, which was left alone)")  # fmt: skip
    for name in report.killed_groups:
        click.echo(f"killed leftover processes of {name}")
    for container in report.removed_containers:
        click.echo(f"removed container {container}")
    click.echo("stack stopped")


def _gateway_get(path: str, method: str = "GET", timeout: float = 10.0) -> dict[str, object]:
    settings = Settings.from_env()
    run = RunFile.read(settings.run_file)
    if run is None:
        raise SparkstackError("no stack is running; start one with `sparkstack up`")
    load_env_file(Path.cwd() / ".env")
    request = urllib.request.Request(run.gateway_url + path, method=method)
    admin_key = os.environ.get("SPARKSTACK_ADMIN_KEY")
    if admin_key:
        request.add_header("Authorization", f"Bearer {admin_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, object] = json.load(response)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            try:
                message = json.load(exc)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise SparkstackError(f"{path}: {message}") from exc
        raise SparkstackError(
            f"the gateway refused {path} (HTTP {exc.code}); set SPARKSTACK_ADMIN_KEY (in the "
            "environment or .env) to an admin key: `sparkstack keys create NAME --admin`"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SparkstackError(
            f"the gateway at {run.gateway_url} does not answer ({exc}); is `sparkstack up` "
            "still running? `sparkstack down` cleans up after a dead one"
        ) from exc


def _mib(value: object) -> str:
    return f"{int(value) / 2**20:,.0f} MiB" if isinstance(value, int) else "-"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status JSON.")
def status(as_json: bool) -> None:
    """Show each model: engine, state, port, pid and resident memory."""
    data = _gateway_get("/admin/status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    rows = data.get("models")
    assert isinstance(rows, list)
    header = f"{'MODEL':<16} {'ENGINE':<9} {'STATE':<9} {'PORT':>6} {'PID':>8} {'RSS':>11}  NOTE"
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['name']:<16} {row['engine']:<9} {row['state']:<9} "
            f"{row['port'] or '-':>6} {row['pid'] or '-':>8} {_mib(row['rss_bytes']):>11}  "
            f"{'on ' + ', '.join(row['nodes']) + ' ' if row.get('nodes') else ''}"
            f"{row['error'] or ''}"
        )
        if row.get("image"):
            click.echo(f"{'':<16} image {row['image']}")
    nodes = data.get("nodes")
    if isinstance(nodes, list) and nodes:
        click.echo("")
        click.echo("\n".join(node_lines([NodeStatus.model_validate(n) for n in nodes])))


def _model_action(action: str, name: str) -> None:
    # a load waits for the engine to start: minutes for a large model
    data = _gateway_get(f"/admin/models/{name}/{action}", method="POST", timeout=3600.0)
    click.echo(f"{data['model']}: {data['outcome']} (state {data['state']})")


@cli.command()
@click.argument("name")
def load(name: str) -> None:
    """Start model NAME now (making room by evicting idle on-demand models)."""
    _model_action("load", name)


@cli.command()
@click.argument("name")
def unload(name: str) -> None:
    """Stop model NAME now; an on-demand model wakes again on its next request."""
    _model_action("unload", name)


@cli.command()
@click.argument("name")
def sleep(name: str) -> None:
    """Put model NAME to sleep (vLLM sleep mode), or stop it if its engine cannot sleep."""
    _model_action("sleep", name)


@cli.command()
@click.argument("name")
def wake(name: str) -> None:
    """Wake model NAME from sleep, or start it."""
    _model_action("wake", name)


@cli.command()
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
def logs(name: str, lines: int, follow: bool) -> None:
    """Print the log of model NAME, or with NAME `gateway` the gateway's access log
    (one JSON object per request)."""
    settings = Settings.from_env()
    path = settings.log_dir / f"{name}.log"
    if name == "gateway" and not path.exists():
        path = settings.gateway_log_file
    if not path.exists():
        raise SparkstackError(f"no log for {name!r} at {path}; is the name right?")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            click.echo(line, nl=False)
        while follow:
            line = handle.readline()
            if line:
                click.echo(line, nl=False)
            else:
                time.sleep(0.2)


@cli.group()
def keys() -> None:
    """API keys of the gateway (stored hashed in ~/.config/sparkstack/keys.json)."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May use /admin/* as well.")
@click.option("--models", help="Comma-separated models (or aliases) this key may use.")
@click.option("--rate", type=int, help="Requests per minute.")
@click.option("--concurrency", type=int, help="Requests in flight at once.")
@click.option(
    "--priority",
    type=click.IntRange(-1000, 1000),
    default=0,
    show_default=True,
    help="Place in a busy model's queue: higher is served first.",
)
@click.option("--quiet", is_flag=True, help="Print the key only.")
def keys_create(
    name: str,
    admin: bool,
    models: str | None,
    rate: int | None,
    concurrency: int | None,
    priority: int,
    quiet: bool,
) -> None:
    """Create a key; it is shown once, now, and never again."""
    store = KeyStore(Settings.from_env().keys_file)
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    record, secret = store.create(
        name, admin=admin, models=allowed, rate_per_minute=rate, max_concurrency=concurrency,
        priority=priority,
    )  # fmt: skip
    if quiet:
        click.echo(secret)
        return
    click.echo(f"created key {record.id} ({name}); it is shown once, store it now:\n{secret}")


@keys.command("list")
def keys_list() -> None:
    """The keys: id, name, scope, models, limits, state (never the secrets)."""
    data = KeyStore(Settings.from_env().keys_file).load()
    click.echo(f"{'ID':<9} {'NAME':<16} {'SCOPE':<9} {'MODELS':<20} {'RATE/MIN':>8} "
               f"{'CONC':>5} {'PRIO':>5}  STATE")  # fmt: skip
    for k in data.keys:
        click.echo(
            f"{k.id:<9} {k.name:<16} {'admin' if k.admin else 'inference':<9} "
            f"{','.join(k.models) if k.models else 'all':<20} {k.rate_per_minute or '-':>8} "
            f"{k.max_concurrency or '-':>5} {k.priority:>5}  "
            f"{'revoked' if k.revoked else 'active'}"
        )


@keys.command("revoke")
@click.argument("id_or_name")
def keys_revoke(id_or_name: str) -> None:
    """Revoke a key by id or name; a running gateway refuses it within a second."""
    record = KeyStore(Settings.from_env().keys_file).revoke(id_or_name)
    click.echo(f"revoked key {record.id} ({record.name})")


cli.add_command(bench)
cli.add_command(export)
cli.add_command(top)
cli.add_command(footprints)
cli.add_command(node)
cli.add_command(doctor)
cli.add_command(pull)


def main() -> None:
    run(cli)
