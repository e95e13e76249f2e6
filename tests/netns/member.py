"""One gossipreg member in its own process (run inside a network namespace), for the fault tests.

Run from the repository root as::

    ip netns exec NS python -m tests.netns.member --name NAME --bind HOST:PORT \
        [--seed HOST:PORT]... [--service SVC]...

It binds ``HOST:PORT`` (UDP and TCP), joins through the seeds (none: it starts
the cluster), registers each ``SVC`` with one node whose id is ``NAME``, and
writes JSON lines to stdout, each stamped with ``"t"``, its ``time.monotonic()``
reading (every process runs on the same host, so the stamps of all members and
of the test are comparable):

* ``{"event": "ready", "name": ..., "address": [host, port]}`` once joined and
  registered;
* ``{"event": "watch", "action": ..., "service": ..., "version": ..., "nodes": [ids]}``
  for every result of a watch on every service, opened (with a snapshot) before
  the first registration, so the stream is this member's exact view history;
* ``{"event": "view", "states": {member: state}, "incarnations": {member: n},
  "visible": [[service, node id], ...]}``
  at start and whenever the polled view (``members()``, ``get_service``) changes,
  checked every 20 ms;
* ``{"event": "done", "cmd": ..., "service": ...}`` after each stdin command;
* ``{"event": "stats", "stats": {...}}`` for the ``stats`` command;
* ``{"event": "overflow"}`` if the watch buffer overflowed (the test then fails);
* ``{"event": "member", "kind": ..., "member": ...}`` for each membership event (joined,
  updated, suspected, failed, left, ...), taken from the registry's debug log line
  ``gossipreg: KIND NAME``; for diagnosis only (the checks do not rely on it).

Commands are JSON lines on stdin: ``{"cmd": "register", "service": SVC}``,
``{"cmd": "deregister", "service": SVC}`` and ``{"cmd": "stats"}``. It leaves
gracefully when stdin closes and dies at once on SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import trio

from gossipreg.core.errors import NotFoundError, WatchOverflowError
from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry, open_registry

# The integration tests' key and FAST profile (push-pull only every 15 s, so a heal is
# not repaired by the periodic exchange).
from tests.integration.helpers import FAST, KEY

#: Seconds between two polls of the view.
POLL_INTERVAL = 0.02


def _emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "t": time.monotonic(), **fields}, sort_keys=True)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _MemberEvents(logging.Handler):
    """Re-emits the registry's per-event debug line (``gossipreg: KIND NAME``) as a report."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "gossipreg: %s %s" and isinstance(record.args, tuple) and len(record.args) == 2:
            _emit("member", kind=str(record.args[0]), member=str(record.args[1]))


def _log_member_events() -> None:
    logger = logging.getLogger("gossipreg")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_MemberEvents(logging.DEBUG))
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    logger.addHandler(warnings)


def _service(name: str, member: str, host: str) -> Service:
    return Service(name, "1", nodes=(Node(member, f"{host}:9"),))


def _visible(reg: AsyncRegistry) -> list[list[str]]:
    out: set[tuple[str, str]] = set()
    for summary in reg.list_services():
        try:
            versions = reg.get_service(summary.name)
        except NotFoundError:
            continue
        out.update((svc.name, node.id) for svc in versions for node in svc.nodes)
    return [list(pair) for pair in sorted(out)]


async def _report_views(reg: AsyncRegistry) -> None:
    last: tuple[dict[str, str], dict[str, int], list[list[str]]] | None = None
    while True:
        members = reg.members()
        states: dict[str, str] = {m.name: m.state for m in members}
        view = (states, {m.name: m.incarnation for m in members}, _visible(reg))
        if view != last:
            _emit("view", states=view[0], incarnations=view[1], visible=view[2])
            last = view
        await trio.sleep(POLL_INTERVAL)


async def _report_watch(reg: AsyncRegistry, task_status: trio.TaskStatus[None]) -> None:
    started = False
    while True:
        async with reg.watch(snapshot=True) as watcher:
            if not started:
                task_status.started()
                started = True
            try:
                async for result in watcher:
                    svc = result.service
                    _emit(
                        "watch",
                        action=result.action,
                        service=svc.name,
                        version=svc.version,
                        nodes=[node.id for node in svc.nodes],
                    )
            except WatchOverflowError:
                _emit("overflow")
                continue
        return


async def _serve_commands(reg: AsyncRegistry, name: str, host: str) -> None:
    """Run stdin commands until EOF."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buf = b""
    async with stdin:
        while chunk := await stdin.receive_some(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                cmd = json.loads(line)
                op = cmd["cmd"]
                if op == "register":
                    await reg.register(_service(cmd["service"], name, host))
                elif op == "deregister":
                    await reg.deregister(_service(cmd["service"], name, host))
                elif op == "stats":
                    _emit("stats", stats=reg.statistics())
                    continue
                else:
                    raise ValueError(f"unknown command {op!r}")
                _emit("done", cmd=op, service=cmd["service"])


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", required=True, help="HOST:PORT")
    parser.add_argument("--seed", action="append", default=[])
    parser.add_argument("--service", action="append", default=[])
    parser.add_argument("--join-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    _log_member_events()
    host = args.bind.rsplit(":", 1)[0]
    async with (
        open_registry(
            args.bind, args.seed or None, name=args.name, keyring=KEY, config=FAST, timeout=args.join_timeout
        ) as reg,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(_report_watch, reg)
        nursery.start_soon(_report_views, reg)
        for svc in args.service:
            await reg.register(_service(svc, args.name, host))
        _emit("ready", name=reg.name, address=list(reg.address))
        await _serve_commands(reg, args.name, host)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
