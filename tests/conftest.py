"""Fixtures shared by the test packages."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gossipreg.default import close_default_registry
from tests.agent.processes import AgentProcess


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No inherited ``GOSSIPREG_*`` variable, the default registry's bind on port 0, and
    no default registry before or after the test."""
    for var in list(os.environ):
        if var.startswith("GOSSIPREG_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GOSSIPREG_BIND", "127.0.0.1:0")
    close_default_registry()
    yield
    close_default_registry()


@pytest.fixture
def processes() -> Iterator[list[AgentProcess]]:
    """A list to append started agent processes to; each is killed after the test."""
    started: list[AgentProcess] = []
    yield started
    for p in started:
        p.kill()
