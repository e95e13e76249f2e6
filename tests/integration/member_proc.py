"""One gossipreg member in its own OS process, for the multi-process tests.

Run as ``python -m tests.integration.member_proc --name NAME [--seed HOST:PORT]
[--service SVC]`` from the repository root. It binds 127.0.0.1:0, joins
through the seed, registers ``SVC`` (one node), then writes JSON lines to
stdout:

* ``{"event": "ready", "name": ..., "address": [host, port]}`` once joined
  and registered;
* ``{"event": "view", "states": {name: state}, "services": [names]}`` at
  start and whenever its view changes (checked every 20 ms).

It leaves gracefully when stdin closes, and dies at once on SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import trio

from gossipreg.core.model import Node, Service
from gossipreg.registry import AsyncRegistry, open_registry

from .helpers import FAST, KEY


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def _view(reg: AsyncRegistry) -> dict[str, Any]:
    return {
        "event": "view",
        "states": {m.name: m.state for m in reg.members()},
        "services": sorted(s.name for s in reg.list_services()),
    }


async def _report(reg: AsyncRegistry) -> None:
    last: dict[str, Any] | None = None
    while True:
        view = _view(reg)
        if view != last:
            _emit(view)
            last = view
        await trio.sleep(0.02)


async def _wait_stdin_eof() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed", default=None)
    parser.add_argument("--service", default=None)
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed else None
    async with open_registry("127.0.0.1:0", seeds, name=args.name, keyring=KEY, config=FAST) as reg:
        if args.service:
            await reg.register(Service(args.service, "1", nodes=(Node(f"{args.name}-1", "127.0.0.1:9"),)))
        _emit({"event": "ready", "name": reg.name, "address": list(reg.address)})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report, reg)
            await _wait_stdin_eof()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
