"""``gossipreg simulate``: run the deterministic cluster simulator.

A thin door to ``python -m simulations``: every argument is passed through,
so ``gossipreg simulate run --nodes 200 --seconds 60 --json`` is the same as
``python -m simulations run --nodes 200 --seconds 60 --json``.
"""

from __future__ import annotations

import click

from .main import CommandError, cli


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """Run the cluster simulator (see: gossipreg simulate run --help)."""
    try:
        from simulations.__main__ import main as simulations_main
    except ImportError as exc:  # pragma: no cover - the harness ships with the package
        raise CommandError(f"the simulation harness is not installed: {exc}") from None
    status = simulations_main(list(args) or ["--help"])
    if status:
        raise SystemExit(status)
