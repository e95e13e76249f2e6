"""``gossipreg agent``: run a long-lived member with the local HTTP API.

The options can also come from a TOML file (``--config``); a flag given on
the command line wins over the file. See :mod:`gossipreg.agent.settings` for
the file's keys and ``docs/http-api.md`` for the API.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import trio
from click.core import ParameterSource

from .._groups import single_exception
from ..agent.agent import Agent
from ..agent.logs import configure_logging
from ..agent.settings import DEFAULT_HTTP, LOG_LEVELS, PROFILES, AgentSettings, load_config_file, prepare
from ..core.errors import ConfigError, JoinError
from ..default import DEFAULT_BIND
from .main import CommandError, cli

__all__ = ["agent"]

_PATH = click.Path(dir_okay=False, path_type=Path)

#: Command-line parameter -> AgentSettings field, for the options a file may also set.
_FIELDS = {
    "bind": "bind",
    "advertise": "advertise",
    "join": "join",
    "name": "name",
    "keyring_file": "keyring_file",
    "tls_ca": "tls_ca",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "identities": "identities",
    "profile": "profile",
    "insecure": "insecure",
    "http": "http",
    "http_token": "http_token",
    "http_token_file": "http_token_file",
    "service": "services",
    "service_ttl": "service_ttl",
    "join_timeout": "join_timeout",
    "log_json": "log_json",
    "log_level": "log_level",
}




def build_settings(ctx: click.Context, params: dict[str, Any]) -> AgentSettings:
    """The settings of one ``gossipreg agent`` call: defaults, then ``--config``, then the flags given.

    Raises:
        ConfigError: the configuration file is invalid.
    """
    values: dict[str, Any] = {}
    if params.get("config") is not None:
        values.update(load_config_file(params["config"]))
    for param, fld in _FIELDS.items():
        source = ctx.get_parameter_source(param)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            value = params[param]
            values[fld] = tuple(value) if isinstance(value, tuple | list) else value
    return AgentSettings(**values)


@cli.command("agent")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, exists=False, path_type=Path),
    help="TOML file with any of these options (as keys) and a [protocol] table of Config fields.",
)
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=DEFAULT_BIND,
    show_default=True,
    help="Address to bind UDP and TCP gossip on ([v6]:port for IPv6).",
)
@click.option(
    "--advertise",
    metavar="HOST[:PORT]",
    help="Address other members reach this one at (needed behind NAT or when binding 0.0.0.0).",
)
@click.option(
    "--join",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A member to join through; repeatable. DNS names are re-resolved on every retry.",
)
@click.option("--name", help="This member's unique name (default: hostname plus a random suffix).")
@click.option(
    "--keyring-file",
    type=_PATH,
    help="Cluster keyring: base64 keys, one a line, the first primary. "
    "Rewritten when the keyring is changed through the API.",
)
@click.option("--tls-ca", type=_PATH, help="Cluster CA certificate (PEM) for mutual TLS on streams.")
@click.option("--tls-cert", type=_PATH, help="This member's certificate (PEM).")
@click.option("--tls-key", type=_PATH, help="This member's private key (PEM).")
@click.option(
    "--identities",
    is_flag=True,
    help="Member identities: sign this member's registrations, alives and leave with the "
    "--tls-cert certificate, and accept such statements only signed by their member "
    "(every member of the cluster must use it).",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="lan",
    show_default=True,
    help="Protocol timing profile.",
)
@click.option("--insecure", is_flag=True, help="Run without encryption (explicit opt-in; no keyring).")
@click.option(
    "--http", metavar="HOST:PORT", default=DEFAULT_HTTP, show_default=True, help="Address of the HTTP API."
)
@click.option(
    "--http-token",
    envvar="GOSSIPREG_HTTP_TOKEN",
    metavar="TOKEN",
    help="Bearer token the API requires for every request that is not a plain read "
    "(env GOSSIPREG_HTTP_TOKEN). Without it, the token of --http-token-file is used.",
)
@click.option(
    "--http-token-file",
    envvar="GOSSIPREG_HTTP_TOKEN_FILE",
    type=_PATH,
    help="File holding the API token, created (mode 0600) with a random token if missing "
    "(env GOSSIPREG_HTTP_TOKEN_FILE). Default: $GOSSIPREG_STATE_DIR/http-token, else "
    "/var/lib/gossipreg/http-token for root, else $XDG_STATE_HOME/gossipreg/http-token, else "
    "~/.local/state/gossipreg/http-token. "
    "A non-loopback --http needs --http-token or this.",
)
@click.option(
    "--service",
    multiple=True,
    type=_PATH,
    help="A go-micro JSON service file to register at start and keep alive; repeatable.",
)
@click.option(
    "--service-ttl",
    type=float,
    default=30.0,
    show_default=True,
    help="TTL in seconds of --service registrations (renewed every TTL/3).",
)
@click.option(
    "--join-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to keep trying --join members before giving up.",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of text.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="Least severe level logged.",
)
@click.pass_context
def agent(ctx: click.Context, /, **params: Any) -> None:
    """Run a long-lived member with the local HTTP API until SIGINT or SIGTERM.

    On either signal the member leaves the cluster gracefully.

    \b
    Examples:
      gossipreg agent --keyring-file /etc/gossipreg/keyring --bind 0.0.0.0:7946 \\
          --advertise 10.0.0.7 --join 10.0.0.5 --service web.json
      gossipreg agent --config /etc/gossipreg/agent.toml
    """
    try:
        settings = build_settings(ctx, params)
        prepared = prepare(settings)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    level = settings.log_level
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        level = "debug"  # gossipreg -vv agent
    configure_logging(level, json_lines=settings.log_json)
    runner = Agent(prepared)
    try:
        trio.run(runner.run_until_signal)
    except BaseException as group:
        inner = single_exception(group)
        if isinstance(inner, ConfigError | JoinError):
            raise CommandError(str(inner)) from None
        if isinstance(inner, OSError):
            raise CommandError(f"{inner.strerror or inner}") from None
        if inner is group:
            raise
        raise inner from None
