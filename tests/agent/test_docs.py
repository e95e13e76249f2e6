"""docs/http-api.md stays true to the code: every route and every agent option is documented."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from gossipreg.agent.api import AgentAPI
from gossipreg.agent.keyring import KeyringManager
from gossipreg.cli.agent import agent
from gossipreg.registry import AsyncRegistry

DOC = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()


def test_every_route_is_documented() -> None:
    api = AgentAPI(cast(AsyncRegistry, object()), KeyringManager(None))
    routes = {(method, path) for path, methods in api._routes.items() for method in methods}
    routes.add(("GET", "/v1/services/{name}"))
    assert len(routes) == 13
    for method, path in routes:
        if path.startswith("/v1/keyring/"):
            assert "`POST /v1/keyring/install`, `/use`, `/remove`" in DOC
            assert f"/{path.rsplit('/', 1)[1]}`" in DOC, path
        else:
            assert f"`{method} {path}" in DOC, (method, path)


def test_every_agent_option_is_documented() -> None:
    for param in agent.params:
        if isinstance(param, click.Option):
            flag = max(param.opts, key=len)
            assert flag in DOC, flag
