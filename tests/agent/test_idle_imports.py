"""A running agent holds only the libraries it uses: the rest load when first needed.

Each test runs an agent, as the ``gossipreg agent`` command does (its module
imported, the member on 127.0.0.1 port 0), in a fresh interpreter, and reads
that interpreter's ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

#: Loaded only by what an idle agent without a scrape, a client request or a config file never does.
UNUSED_WHEN_IDLE = ("prometheus_client", "gossipreg.metrics", "gossipreg.agent.metrics", "http.client",
                    "http.server", "email", "urllib.request", "wsgiref", "tomllib", "cryptography.x509")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import trio
    import gossipreg.cli.agent  # what the command imports
    from gossipreg.agent import Agent, AgentSettings, prepare

    async def main() -> None:
        with trio.fail_after(30):
            agent = Agent(prepare(AgentSettings(bind="127.0.0.1:0", http="127.0.0.1:0", insecure=True,
                                                http_token="a-token")))
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                idle = sorted(sys.modules)
                scraped = None
                if sys.argv[1] == "scrape":
                    stream = await trio.open_tcp_stream("127.0.0.1", agent.http_port)
                    host = f"127.0.0.1:{agent.http_port}"
                    await stream.send_all(f"GET /v1/metrics HTTP/1.1\\r\\nHost: {host}\\r\\n"
                                          "Connection: close\\r\\n\\r\\n".encode())
                    answer = b""
                    while chunk := await stream.receive_some():
                        answer += chunk
                    await stream.aclose()
                    scraped = [answer.decode().split("\\r\\n", 1)[0], "gossipreg_members" in answer.decode(),
                               sorted(sys.modules)]
                agent.stop()
        print(json.dumps({"idle": idle, "scraped": scraped}))

    trio.run(main)
    """
)


def run_agent(mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60,
                         check=True)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_an_idle_agent_imports_neither_prometheus_nor_http_client_nor_toml() -> None:
    modules = run_agent("idle")["idle"]
    assert "gossipreg.agent.api" in modules
    assert loaded(modules, UNUSED_WHEN_IDLE) == []


def test_the_first_scrape_loads_the_metrics() -> None:
    status, has_members, modules = run_agent("scrape")["scraped"]
    assert status == "HTTP/1.1 200 OK"
    assert has_members is True
    assert "prometheus_client" in modules


def test_releasing_the_startup_memory_runs_on_linux_and_does_nothing_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gossipreg.agent.agent import release_startup_memory

    release_startup_memory()  # glibc's malloc_trim(0) here
    release_startup_memory()  # again: harmless
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setitem(sys.modules, "ctypes", None)  # importing it now would raise
    release_startup_memory()
