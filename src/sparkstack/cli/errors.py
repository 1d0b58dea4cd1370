"""The command line's one error boundary and its exit codes (documented in the
README): 0 success, 1 an error the message explains, 2 bad command-line usage,
3 the stack does not fit this machine. Every command lets ``SparkstackError``
rise to ``run``; nothing reaches the user as a traceback for bad input."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from sparkstack.errors import DoesNotFitError, SparkstackError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DOES_NOT_FIT = 3


def exit_code(exc: SparkstackError) -> int:
    return EXIT_DOES_NOT_FIT if isinstance(exc, DoesNotFitError) else EXIT_ERROR


def fail(exc: SparkstackError) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with the code of its kind."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(exit_code(exc))


def run(group: click.Group) -> None:
    """Run the command group; map every expected error to a message and exit code."""
    try:
        code = group.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SparkstackError as exc:
        fail(exc)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
