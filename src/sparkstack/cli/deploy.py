"""`sparkstack doctor` and `sparkstack pull`: check the host before serving, and
stage the weights before going offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sparkstack.cli.export import fail, load_for_export
from sparkstack.deploy.diagnose import diagnose
from sparkstack.deploy.doctor import HostProbe, render_report
from sparkstack.deploy.pull import pull_repo, pull_tiktoken
from sparkstack.deploy.tiktoken_files import needs_tiktoken
from sparkstack.deploy.weights import is_repo_id
from sparkstack.errors import SparkstackError
from sparkstack.settings import Settings
from sparkstack.stack import load_stack


@click.command()
@click.argument("stack_file", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(stack_file: Path | None, as_json: bool) -> None:
    """Check this host for STACK_FILE (the demo stack without one): memory, containers,
    HF cache and disk, tiktoken files, ports, sm_121 caveats, exposure, .env, swap.
    Exit code 1 when a check fails."""

    folders = {Path.cwd()} | ({stack_file.resolve().parent} if stack_file else set())
    try:
        stack, _ = load_for_export(stack_file)
        label = str(stack_file) if stack_file else ""
        report = diagnose(
            stack, label, HostProbe(env_dirs=tuple(sorted(folders))),
            Settings.from_env().keys_file,
        )  # fmt: skip
    except SparkstackError as exc:
        fail(exc)
        return
    click.echo(report.model_dump_json(indent=2) if as_json else render_report(report))
    sys.exit(0 if report.ok else 1)


@click.command()
@click.argument("target")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
def pull(target: str, revision: str) -> None:
    """Download TARGET's weights into the HF cache before serving: a stack file (every
    model given as a HF repo id, and the tiktoken files gpt-oss needs) or one repo id.
    Resumable: run it again after an interruption. Honours HF_ENDPOINT and HF_TOKEN."""

    try:
        if Path(target).is_file():
            stack = load_stack(Path(target))
            models = [s.model for s in stack.models.values() if s.engine != "external"]
            repos = sorted({m for m in models if m and is_repo_id(m)})
        elif is_repo_id(target):
            repos = [target]
        else:
            raise SparkstackError(f"{target!r} is neither a stack file nor a HF repo id (org/name)")
        for repo in repos:
            click.echo(f"pulling {repo} ({revision})", err=True)
            result = pull_repo(repo, revision=revision)
            note = f", {result.resumed_bytes:,} bytes resumed" if result.resumed_bytes else ""
            click.echo(
                f"{repo}: {result.files} files verified at {result.commit[:12]} "
                f"({result.downloaded_bytes:,} bytes downloaded{note}) in {result.snapshot}"
            )
        if any(needs_tiktoken(r) for r in repos):
            folder = pull_tiktoken()
            click.echo(
                f"tiktoken encodings in {folder}; put TIKTOKEN_ENCODINGS_BASE={folder} in .env"
            )
        if not repos:
            click.echo("nothing to pull: every model is local or external")
    except SparkstackError as exc:
        fail(exc)
