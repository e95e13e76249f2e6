"""Entry point of the ``gossipreg`` command: the top-level group.

Each family of subcommands lives in its own module and registers itself on
:data:`cli` when imported below:

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

__all__ = ["CommandError", "cli", "main"]


class CommandError(click.ClickException):
    """A failure to report as ``Error: <message>`` with exit status 1."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gossipreg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gossipreg: a peer-to-peer service registry with no server anywhere."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# Subcommand modules register themselves on `cli` when imported.
for _module in ("demo", "keys", "agent", "ops", "simulate"):
    importlib.import_module(f"gossipreg.cli.{_module}")


def main() -> None:
    """Run the ``gossipreg`` command."""
    cli()
