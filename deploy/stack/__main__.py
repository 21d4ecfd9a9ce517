"""``python -m deploy.stack run | infra | env | install``: the local stack from the shell."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import click

from deploy.stack import tools
from deploy.stack.console import say
from deploy.stack.containers import docker_answers
from deploy.stack.infra import install_missing
from deploy.stack.launch import serve_infra, serve_platform
from deploy.stack.processes import StartupError
from deploy.stack.profiles import DEV, PROFILES, TEST
from deploy.stack.tools import ToolError

PROFILE_OPTION = click.option(
    "--profile",
    "profile_name",
    type=click.Choice(sorted(PROFILES)),
    default=DEV.name,
    show_default=True,
    help="dev: the ports of `make run`; test: the ports of `make test`.",
)


@contextlib.contextmanager
def _failing_cleanly() -> Iterator[None]:
    """A missing tool or a component that does not start: one message and exit status 1."""
    try:
        yield
    except (ToolError, StartupError) as error:
        say(f"failed: {error}")
        sys.exit(1)


def _foreground(main: Coroutine[Any, Any, None]) -> None:
    """Run until done or stopped (Ctrl-C, SIGTERM)."""
    with _failing_cleanly(), contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main)


@click.group()
def cli() -> None:
    """Sendarix's local stack: the broker, database, tracing, mail catcher and services."""


@cli.command()
@PROFILE_OPTION
def install(profile_name: str) -> None:
    """Install what starting a profile's infrastructure needs (nothing for what already runs).

    `make test` runs this first, so a first build shows its progress instead of happening
    silently inside pytest's session fixture.
    """
    profile = PROFILES[profile_name]
    tools.swaks()  # a client, not infrastructure: the SMTP door's tests use it too
    tools.postfix()  # the relay tests' real MTA, run by the tests themselves
    if profile.name == TEST.name:
        tools.chromium()  # the console's browser tests drive it
    if docker_answers():
        say("a Docker engine answers: the infrastructure will run in containers")
        return
    with _failing_cleanly():
        install_missing(profile)


@cli.command()
def run() -> None:
    """Install and start the whole platform (profile dev) in the foreground."""
    _foreground(serve_platform(DEV))


@cli.command()
@PROFILE_OPTION
def infra(profile_name: str) -> None:
    """Start the infrastructure of a profile only, in the foreground."""
    _foreground(serve_infra(PROFILES[profile_name]))


@cli.command()
@PROFILE_OPTION
def env(profile_name: str) -> None:
    """Print the SENDARIX_* variables that point a process at a profile's stack."""
    for name, value in PROFILES[profile_name].settings().as_env().items():
        click.echo(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    cli()
