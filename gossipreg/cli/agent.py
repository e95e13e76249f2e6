"""``gossipreg agent``: run a long-lived member with the local HTTP API.

The options can also come from ``GOSSIPREG_*`` environment variables (the
default registry's, plus the agent's own) and from a TOML file (``--config``,
``GOSSIPREG_CONFIG``): flags win over the environment, which wins over the
file. See :mod:`gossipreg.agent.settings` for the file's keys and the
variables, ``docs/configuration.md`` for the table of variables and
``docs/http-api.md`` for the API.
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
from ..agent.settings import (
    DEFAULT_HTTP,
    ENVIRONMENT,
    LOG_LEVELS,
    PROFILES,
    AgentSettings,
    layered,
    load_config_file,
    load_environment,
    prepare,
)
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
    "retry_join": "retry_join",
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


def _env(fld: str) -> str:
    """The help text's note of the variable that also sets option ``fld``."""
    return f" [env: {ENVIRONMENT[fld]}]"


def build_settings(ctx: click.Context, params: dict[str, Any]) -> AgentSettings:
    """The settings of one ``gossipreg agent`` call: defaults < ``--config`` < ``GOSSIPREG_*`` < flags.

    Raises:
        ConfigError: the configuration file or a variable is invalid.
    """
    file: dict[str, Any] = {}
    if params.get("config") is not None:
        file = load_config_file(params["config"])
    env = load_environment()
    flags: dict[str, Any] = {}
    for param, fld in _FIELDS.items():
        if ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE:
            value = params[param]
            flags[fld] = tuple(value) if isinstance(value, tuple | list) else value
    return layered(file, env, flags)


@cli.command("agent")
@click.option(
    "--config",
    "config",
    envvar="GOSSIPREG_CONFIG",
    type=click.Path(dir_okay=False, exists=False, path_type=Path),
    help="TOML file with any of these options (as keys) and a [protocol] table of Config fields. "
    "[env: GOSSIPREG_CONFIG]",
)
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=DEFAULT_BIND,
    show_default=True,
    help="Address to bind UDP and TCP gossip on ([v6]:port for IPv6)." + _env("bind"),
)
@click.option(
    "--advertise",
    metavar="HOST[:PORT]",
    help="Address other members reach this one at (needed behind NAT or when binding 0.0.0.0)."
    + _env("advertise"),
)
@click.option(
    "--join",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A member to join through; repeatable. DNS names are re-resolved on every retry; "
    "srv:NAME stands for the targets of DNS SRV record NAME. [env: GOSSIPREG_SEEDS, comma-separated]",
)
@click.option(
    "--retry-join",
    is_flag=True,
    help="Start at once, serving alone, and keep trying the --join members until one answers "
    "(instead of failing after --join-timeout): for platforms that start every member at once."
    + _env("retry_join"),
)
@click.option(
    "--name", help="This member's unique name (default: hostname plus a random suffix)." + _env("name")
)
@click.option(
    "--keyring-file",
    type=_PATH,
    help="Cluster keyring: base64 keys, one a line, the first primary. "
    "Rewritten when the keyring is changed through the API. "
    "[env: GOSSIPREG_KEYRING_FILE; or GOSSIPREG_KEYRING, the comma-separated keys themselves]",
)
@click.option(
    "--tls-ca", type=_PATH, help="Cluster CA certificate (PEM) for mutual TLS on streams." + _env("tls_ca")
)
@click.option("--tls-cert", type=_PATH, help="This member's certificate (PEM)." + _env("tls_cert"))
@click.option("--tls-key", type=_PATH, help="This member's private key (PEM)." + _env("tls_key"))
@click.option(
    "--identities",
    is_flag=True,
    help="Member identities: sign this member's registrations, alives and leave with the "
    "--tls-cert certificate, and accept such statements only signed by their member "
    "(every member of the cluster must use it)." + _env("identities"),
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="lan",
    show_default=True,
    help="Protocol timing profile." + _env("profile"),
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Run without encryption (explicit opt-in; no keyring)." + _env("insecure"),
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    default=DEFAULT_HTTP,
    show_default=True,
    help="Address of the HTTP API." + _env("http"),
)
@click.option(
    "--http-token",
    metavar="TOKEN",
    help="Bearer token the API requires for every request that is not a plain read. "
    "Without it, the token of --http-token-file is used." + _env("http_token"),
)
@click.option(
    "--http-token-file",
    type=_PATH,
    help="File holding the API token, created (mode 0600) with a random token if missing. "
    "Default: $GOSSIPREG_STATE_DIR/http-token, else "
    "/var/lib/gossipreg/http-token for root, else $XDG_STATE_HOME/gossipreg/http-token, else "
    "~/.local/state/gossipreg/http-token. "
    "A non-loopback --http needs --http-token or this." + _env("http_token_file"),
)
@click.option(
    "--service",
    multiple=True,
    type=_PATH,
    help="A go-micro JSON service file to register at start and keep alive; repeatable. "
    "[env: GOSSIPREG_SERVICE_FILES, comma-separated]",
)
@click.option(
    "--service-ttl",
    type=float,
    default=30.0,
    show_default=True,
    help="TTL in seconds of --service registrations (renewed every TTL/3)." + _env("service_ttl"),
)
@click.option(
    "--join-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to keep trying --join members before giving up (with --retry-join: before the "
    "first warning)." + _env("join_timeout"),
)
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of text." + _env("log_json"))
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="Least severe level logged." + _env("log_level"),
)
@click.pass_context
def agent(ctx: click.Context, /, **params: Any) -> None:
    """Run a long-lived member with the local HTTP API until SIGINT or SIGTERM.

    On either signal the member leaves the cluster gracefully. Under systemd
    with Type=notify ($NOTIFY_SOCKET set) the agent reports READY=1 once its
    member runs and its API listens, and STOPPING=1 when it starts leaving.

    Every option can also be set by the GOSSIPREG_* variable named in its help
    (the same variables as the library's default registry) or by the
    --config file. Flags win over variables, variables over the file. Switches
    take 1/true/yes/on or 0/false/no/off; lists are comma-separated.

    \b
    Examples:
      gossipreg agent --keyring-file /etc/gossipreg/keyring --bind 0.0.0.0:7946 \\
          --advertise 10.0.0.7 --join 10.0.0.5 --service web.json
      gossipreg agent --config /etc/gossipreg/agent.toml
      GOSSIPREG_KEYRING_FILE=keyring GOSSIPREG_SEEDS=gossip.internal \\
          GOSSIPREG_RETRY_JOIN=1 gossipreg agent
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
