"""Operator commands that talk to a running agent's HTTP API.

``members``, ``services``, ``get``, ``watch``, ``register``, ``deregister``
and the ``keyring`` group. Each takes ``--agent URL`` (env
``GOSSIPREG_AGENT``, default ``http://127.0.0.1:8946``); the read commands
print tables, or JSON with ``--json``.

Writes and every keyring command need the agent's token. The commands find
it themselves (:func:`~gossipreg.agent.client.find_token`): ``--token``,
then env ``GOSSIPREG_HTTP_TOKEN``, then ``--token-file`` / env
``GOSSIPREG_HTTP_TOKEN_FILE``, then, for an agent on a loopback address
only, the default token file an agent makes when it has no configured token
(:func:`~gossipreg.agent.client.default_token_file`). A 401 answer is
reported with where to look.

``gossipreg keyring install|use|remove KEY`` accept ``--agent`` several times
(or a comma-separated list) and apply the change to each agent in turn: the
cluster-wide rotation is install everywhere, then use everywhere, then remove
the old key everywhere. ``use`` first checks that every agent given has the
key installed, and ``remove`` that no agent given still uses it as its
primary, so a step taken too early changes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..agent.client import DEFAULT_AGENT, AgentClient, AgentError, default_token_file, find_token
from ..agent.keyring import decode_key, fingerprint
from ..core.errors import ConfigError, InvalidServiceError
from ..core.model import Service
from .main import CommandError, cli

__all__ = ["deregister", "get", "keyring", "members", "register", "services", "watch"]

F = TypeVar("F", bound=Callable[..., Any])


def _agent_option(f: F) -> F:
    return click.option(
        "--agent",
        "agent_url",
        envvar="GOSSIPREG_AGENT",
        default=DEFAULT_AGENT,
        show_default=True,
        metavar="URL",
        help="The agent's HTTP API (env GOSSIPREG_AGENT).",
    )(f)


def _agents_option(f: F) -> F:
    return click.option(
        "--agent",
        "agent_urls",
        envvar="GOSSIPREG_AGENT",
        multiple=True,
        metavar="URL",
        help="An agent's HTTP API; repeatable, or a comma-separated list (env GOSSIPREG_AGENT). "
        f"Default {DEFAULT_AGENT}.",
    )(f)


def _token_option(f: F) -> F:
    f = click.option(
        "--token-file",
        envvar="GOSSIPREG_HTTP_TOKEN_FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="File holding the API's token (env GOSSIPREG_HTTP_TOKEN_FILE), used without --token. "
        "Without either, a loopback agent's token is read from the default token file if it exists.",
    )(f)
    return click.option(
        "--token",
        envvar="GOSSIPREG_HTTP_TOKEN",
        metavar="TOKEN",
        help="Bearer token of the API (env GOSSIPREG_HTTP_TOKEN); writes and keyring commands need it.",
    )(f)


def _json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(f)


def _client(url: str, token: str | None, token_file: Path | None) -> AgentClient:
    """A client of the agent at ``url`` with the token :func:`find_token` finds for it."""
    try:
        found = find_token(url, token, token_file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    try:
        return AgentClient(url, found)
    except AgentError as exc:
        raise CommandError(str(exc)) from None


def _explain(exc: AgentError) -> str:
    """The message of ``exc``, with where to find the token when the agent answered 401."""
    if exc.status != 401:
        return str(exc)
    try:
        default = f"; a local agent's default token file is {default_token_file()}"
    except ConfigError:
        default = ""
    return (
        f"{exc} (give the agent's token with --token or --token-file, env GOSSIPREG_HTTP_TOKEN or "
        f"GOSSIPREG_HTTP_TOKEN_FILE; the agent logs where its token file is{default})"
    )


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except AgentError as exc:
        raise CommandError(_explain(exc)) from None


def _console() -> Console:
    # Made per command, so the output goes to whatever sys.stdout is now.
    return Console(highlight=False, soft_wrap=False)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _meta(metadata: Any) -> str:
    if not isinstance(metadata, dict) or not metadata:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(metadata.items()))


def _node_address(node: dict[str, Any]) -> str:
    address = str(node.get("address", ""))
    port = node.get("port")
    return f"{address}:{port}" if port else address


def _read_service(path: str) -> Service:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(f"{path}: cannot be read: {reason}") from None
    try:
        return Service.from_json(text)
    except InvalidServiceError as exc:
        raise CommandError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- reads


@cli.command("members")
@_agent_option
@_token_option
@_json_option
def members(agent_url: str, token: str | None, token_file: Path | None, as_json: bool) -> None:
    """List the cluster's members as the agent sees them."""
    answer = _call(_client(agent_url, token, token_file).members)
    if as_json:
        _print_json(answer)
        return
    table = Table(
        "Name", "Address", "State", "Incarnation", "Metadata", caption=f"as seen by {answer['member']}"
    )
    for m in answer["members"]:
        table.add_row(m["name"], m["address"], m["state"], str(m["incarnation"]), _meta(m.get("metadata")))
    _console().print(table)


@cli.command("services")
@_agent_option
@_token_option
@_json_option
def services(agent_url: str, token: str | None, token_file: Path | None, as_json: bool) -> None:
    """List every registered service and version."""
    answer = _call(_client(agent_url, token, token_file).services)
    if as_json:
        _print_json({"services": answer})
        return
    if not answer:
        click.echo("no services registered")
        return
    table = Table("Name", "Version", "Metadata")
    for s in answer:
        table.add_row(s["name"], s["version"] or "-", _meta(s.get("metadata")))
    _console().print(table)


@cli.command("get")
@click.argument("name")
@_agent_option
@_token_option
@_json_option
def get(name: str, agent_url: str, token: str | None, token_file: Path | None, as_json: bool) -> None:
    """Show the nodes of service NAME, per version."""
    client = _client(agent_url, token, token_file)
    answer = _call(lambda: client.service(name))
    if as_json:
        _print_json({"services": answer})
        return
    table = Table("Version", "Node", "Address", "Metadata", title=name)
    for s in answer:
        for node in s["nodes"]:
            table.add_row(s["version"] or "-", node["id"], _node_address(node), _meta(node.get("metadata")))
    _console().print(table)


@cli.command("watch")
@click.option("--service", help="Watch only this service (default: every service).")
@click.option(
    "--snapshot/--no-snapshot",
    default=True,
    show_default=True,
    help="First show the current services as 'create' results.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many results.")
@_agent_option
@_token_option
@_json_option
def watch(
    service: str | None,
    snapshot: bool,
    count: int | None,
    agent_url: str,
    token: str | None,
    token_file: Path | None,
    as_json: bool,
) -> None:
    """Print registry changes as they happen, until interrupted.

    One line per change: the action (create, update, delete), the service,
    its version and the nodes concerned; with --json, one JSON object per line.
    """
    client = _client(agent_url, token, token_file)
    seen = 0
    try:
        for item in client.watch(service, snapshot=snapshot):
            if as_json:
                click.echo(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
            else:
                svc = item.get("service", {})
                nodes = ", ".join(f"{n['id']} {_node_address(n)}" for n in svc.get("nodes", []))
                click.echo(
                    f"{item.get('action', '?'):<7} {svc.get('name', '?')} {svc.get('version') or '-'}"
                    f"  {nodes}".rstrip()
                )
            seen += 1
            if count is not None and seen >= count:
                return
    except AgentError as exc:
        raise CommandError(_explain(exc)) from None
    except KeyboardInterrupt:
        return


# ---------------------------------------------------------------- writes


@cli.command("register")
@click.argument("file", metavar="FILE")
@click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds the registration lives unless registered again (default: as long as the agent).",
)
@_agent_option
@_token_option
@_json_option
def register(
    file: str, ttl: float | None, agent_url: str, token: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Register the go-micro JSON service in FILE ('-' for stdin) with the agent."""
    service = _read_service(file)
    if not service.nodes:
        raise CommandError(f"{file}: service.nodes: lists no node to register")
    client = _client(agent_url, token, token_file)
    query = {"ttl": f"{ttl:g}"} if ttl is not None else None
    answer = _call(lambda: client.request("PUT", "/v1/services", body=service.to_dict(), query=query))
    if as_json:
        _print_json(answer)
        return
    n = len(service.nodes)
    click.echo(
        f"registered {service.name} {service.version or '-'} ({n} node{'s' if n != 1 else ''}) "
        f"on {answer.get('member', agent_url)}" + (f" with ttl {ttl:g}s" if ttl is not None else "")
    )


@cli.command("deregister")
@click.argument("file", metavar="FILE")
@_agent_option
@_token_option
@_json_option
def deregister(file: str, agent_url: str, token: str | None, token_file: Path | None, as_json: bool) -> None:
    """Deregister the service in FILE ('-' for stdin): its listed nodes, or all of that version."""
    service = _read_service(file)
    client = _client(agent_url, token, token_file)
    answer = _call(lambda: client.request("DELETE", "/v1/services", body=service.to_dict()))
    if as_json:
        _print_json(answer)
        return
    what = f"{len(service.nodes)} node(s)" if service.nodes else "every node"
    member = answer.get("member", agent_url)
    click.echo(f"deregistered {service.name} {service.version or '-'} ({what}) on {member}")


# ---------------------------------------------------------------- keyring


def _agent_urls(values: Iterable[str]) -> list[str]:
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            if part.strip() and part.strip() not in urls:
                urls.append(part.strip())
    return urls or [DEFAULT_AGENT]


def _clients(values: Iterable[str], token: str | None, token_file: Path | None) -> list[AgentClient]:
    return [_client(url, token, token_file) for url in _agent_urls(values)]


def _read_key(key: str) -> tuple[str, str]:
    """The base64 key (from the argument, or stdin for '-') and its fingerprint."""
    if key == "-":
        key = sys.stdin.readline()
    key = key.strip()
    try:
        raw = decode_key(key)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    return key, fingerprint(raw)


@cli.group("keyring")
def keyring() -> None:
    """List and rotate the cluster keyring through one or more agents.

    \b
    Rotation without downtime, listing every agent of the cluster each time:
      gossipreg keyring install NEW --agent URL1 --agent URL2 ...
      gossipreg keyring use NEW     --agent URL1 --agent URL2 ...
      gossipreg keyring remove OLD  --agent URL1 --agent URL2 ...
    """


@keyring.command("list")
@_agents_option
@_token_option
@_json_option
def keyring_list(
    agent_urls: tuple[str, ...], token: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Show the fingerprints of each agent's keys and which is primary (never the keys)."""
    clients = _clients(agent_urls, token, token_file)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for client in clients:
        try:
            rows.append({"agent": client.url, **client.keyring()})
        except AgentError as exc:
            failures.append(_explain(exc))
            rows.append({"agent": client.url, "error": str(exc)})
    if as_json:
        _print_json({"agents": rows})
    elif len(failures) < len(rows):
        table = Table("Agent", "Member", "Key fingerprint", "Role")
        for row in rows:
            if "error" in row:
                table.add_row(row["agent"], "?", "unreachable", "")
            elif row.get("insecure"):
                table.add_row(row["agent"], row["member"], "none (insecure)", "")
            else:
                for k in row["keys"]:
                    table.add_row(
                        row["agent"],
                        row["member"],
                        k["fingerprint"],
                        "primary" if k["primary"] else "secondary",
                    )
        _console().print(table)
        rings = {tuple((k["fingerprint"], k["primary"]) for k in r["keys"]) for r in rows if "keys" in r}
        if len(rings) > 1:
            click.echo("note: the agents do not hold the same keys (a rotation in progress?)")
    if failures:
        raise CommandError("; ".join(failures))


def _precheck(clients: list[AgentClient], check: Callable[[dict[str, Any]], str | None], what: str) -> None:
    """Ask every agent for its keyring first; abort, changing nothing, if ``check`` objects to one."""
    for client in clients:
        try:
            ring = client.keyring()
        except AgentError as exc:
            raise CommandError(f"not {what}, nothing changed: {_explain(exc)}") from None
        if ring.get("insecure"):
            raise CommandError(
                f"not {what}, nothing changed: {ring['member']} ({client.url}) runs without "
                "a keyring (insecure)"
            )
        problem = check(ring)
        if problem is not None:
            where = f"{ring['member']} ({client.url})"
            raise CommandError(f"not {what}, nothing changed: {problem.format(where)}")


def _apply(
    op: str, key: str, agent_urls: tuple[str, ...], token: str | None, token_file: Path | None, as_json: bool
) -> None:
    b64, fp = _read_key(key)
    clients = _clients(agent_urls, token, token_file)
    if op == "use":

        def installed(ring: dict[str, Any]) -> str | None:
            if any(k["fingerprint"] == fp for k in ring["keys"]):
                return None
            return "the key is not installed on {}; run 'gossipreg keyring install' on every agent first"

        _precheck(clients, installed, "using the key")
    elif op == "remove":

        def not_primary(ring: dict[str, Any]) -> str | None:
            if ring["primary"] != fp:
                return None
            return (
                "the key is still the primary key of {}; run 'gossipreg keyring use NEW' on every agent first"
            )

        _precheck(clients, not_primary, "removing the key")
    verb = {"install": "installed", "use": "now using", "remove": "removed"}[op]
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for client in clients:
        try:
            answer = client.keyring_op(op, b64)
        except AgentError as exc:
            failures.append(_explain(exc))
            results.append({"agent": client.url, "ok": False, "error": str(exc)})
            if not as_json:
                click.echo(f"{client.url}: failed: {exc}", err=True)
            continue
        results.append({"agent": client.url, "ok": True, **answer})
        if not as_json:
            note = "" if answer.get("changed", True) else " (no change)"
            click.echo(f"{answer.get('member', '?')} ({client.url}): {verb} {fp}{note}")
    if as_json:
        _print_json({"op": op, "fingerprint": fp, "results": results})
    if failures:
        raise CommandError(f"{op} failed on {len(failures)} of {len(clients)} agent(s): {failures[0]}")


@keyring.command("install")
@click.argument("key")
@_agents_option
@_token_option
@_json_option
def keyring_install(
    key: str, agent_urls: tuple[str, ...], token: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Install KEY (base64; '-' reads it from stdin) as a secondary key on each agent."""
    _apply("install", key, agent_urls, token, token_file, as_json)


@keyring.command("use")
@click.argument("key")
@_agents_option
@_token_option
@_json_option
def keyring_use(
    key: str, agent_urls: tuple[str, ...], token: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Make the installed KEY the primary (sealing) key on each agent."""
    _apply("use", key, agent_urls, token, token_file, as_json)


@keyring.command("remove")
@click.argument("key")
@_agents_option
@_token_option
@_json_option
def keyring_remove(
    key: str, agent_urls: tuple[str, ...], token: str | None, token_file: Path | None, as_json: bool
) -> None:
    """Remove KEY from each agent (it must not be the primary key of any)."""
    _apply("remove", key, agent_urls, token, token_file, as_json)
