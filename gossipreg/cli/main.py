"""Entry point of the ``gossipreg`` command: the top-level group.

Each family of subcommands lives in its own module and registers itself on
:data:`cli` when imported, which happens only when one of its commands runs
(:data:`COMMANDS`):

* ``demo``: a local cluster on loopback (:mod:`gossipreg.cli.demo`);
* ``keygen``, ``tls``: keys and certificates (:mod:`gossipreg.cli.keys`);
* ``agent``: a long-running member with the local HTTP API (:mod:`gossipreg.cli.agent`);
* ``members``, ``services``, ``get``, ``watch``, ``register``, ``deregister``,
  ``keyring``: operator commands that talk to agents (:mod:`gossipreg.cli.ops`);
* ``simulate``: the simulation harness (:mod:`gossipreg.cli.simulate`).

Errors read like a tool's: a subcommand raises :class:`click.ClickException`
(or :class:`CommandError`) with a one-line message and exits 1, never with a
traceback.
"""

from __future__ import annotations

import importlib
import logging

import click

__all__ = ["COMMANDS", "CommandError", "cli", "load_all", "main"]


class CommandError(click.ClickException):
    """A failure to report as ``Error: <message>`` with exit status 1."""


#: Each subcommand and the module that defines it: imported only when that command
#: runs (or ``--help`` lists them), so ``gossipreg agent`` loads neither the demo
#: nor the simulator, nor their libraries.
COMMANDS = {
    "agent": "agent",
    "demo": "demo",
    "deregister": "ops",
    "get": "ops",
    "keygen": "keys",
    "keyring": "ops",
    "members": "ops",
    "register": "ops",
    "services": "ops",
    "simulate": "simulate",
    "tls": "keys",
    "watch": "ops",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported from :data:`COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"gossipreg.cli.{COMMANDS[cmd_name]}")  # registers on cli
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gossipreg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gossipreg: a peer-to-peer service registry with no server anywhere."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_all() -> click.Group:
    """Import every subcommand (for documentation and tests that walk them all); returns :data:`cli`."""
    for module in sorted(set(COMMANDS.values())):
        importlib.import_module(f"gossipreg.cli.{module}")
    return cli


def main() -> None:
    """Run the ``gossipreg`` command."""
    cli()
