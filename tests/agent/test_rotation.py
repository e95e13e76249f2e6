"""Cluster-wide key rotation through the agents' APIs: 5 members, install -> use -> remove.

Each member is a full agent (member plus HTTP API) in this process. The rotation
is driven the way an operator would: ``gossipreg keyring install|use|remove KEY
--agent URL ...`` listing every agent. Throughout, a checker verifies that no
member ever loses a registration or declares another dead, and that no packet
fails authentication; at the end the old key no longer opens anything: a member
holding only the old key cannot join.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from gossipreg.agent import Agent
from gossipreg.agent.keyring import fingerprint
from gossipreg.cli.main import cli
from gossipreg.core.config import Config
from gossipreg.core.errors import JoinError
from gossipreg.default import load_keyring_file
from gossipreg.registry import open_registry

from .helpers import (
    FAST,
    KEY1,
    KEY1_B64,
    KEY2,
    KEY2_B64,
    request,
    service,
    start_agent,
    visible,
    wait_until,
    write_keyring,
)

N = 5


async def cli_run(*args: str) -> Result:
    """Run a ``gossipreg`` command in a worker thread (the agents keep running in this one)."""
    return await trio.to_thread.run_sync(lambda: CliRunner().invoke(cli, list(args), catch_exceptions=False))


def total(agents: list[Agent], counter: str) -> int:
    return sum(a.registry.statistics()[counter] for a in agents)


async def gossip_for_a_while(agents: list[Agent], what: str, datagrams: int = 10) -> None:
    """Wait until every member has received ``datagrams`` more datagrams: the cluster has
    gossiped in its current state (a condition, not a span of wall-clock time)."""
    before = [a.registry.statistics()["datagrams_received"] for a in agents]
    await wait_until(
        lambda: all(
            a.registry.statistics()["datagrams_received"] >= b + datagrams
            for a, b in zip(agents, before, strict=True)
        ),
        what,
    )


async def test_rotation_across_a_running_cluster_loses_nothing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            agents: list[Agent] = []
            for i in range(N):
                ring = write_keyring(tmp_path / f"keyring-{i}", KEY1)
                join = (f"{agents[0].registry.address[0]}:{agents[0].registry.address[1]}",) if agents else ()
                agents.append(await start_agent(nursery, name=f"r{i}", keyring_file=ring, join=join, seed=i))
            names = {a.registry.name for a in agents}
            await wait_until(
                lambda: all(
                    {m.name for m in a.registry.members() if m.state == "alive"} == names for a in agents
                ),
                f"{N} members to see {N} alive",
            )

            # Every agent registers one service through its API.
            services = [service(f"svc-{i}", f"node-{i}") for i in range(N)]
            for agent, svc in zip(agents, services, strict=True):
                assert agent.http_port is not None
                reply = await request(
                    agent.http_port,
                    "PUT",
                    "/v1/services",
                    json_body=svc.to_dict(),
                    token=agent.prepared.http_token,
                )
                assert reply.status == 200
            await wait_until(
                lambda: all(visible(a.registry, s) for a in agents for s in services),
                "every registration everywhere",
            )

            violations: list[str] = []

            async def check_forever() -> None:
                # Registrations never lost, nobody declared dead or gone, at any instant.
                while True:
                    for a in agents:
                        for s in services:
                            if not visible(a.registry, s):
                                violations.append(f"{a.registry.name} lost {s.name}")
                        for m in a.registry.members():
                            if m.name in names and m.state in ("dead", "left"):
                                violations.append(f"{a.registry.name} sees {m.name} {m.state}")
                    await trio.sleep(0.02)

            nursery.start_soon(check_forever)
            urls = [a.http_url for a in agents]
            every_agent = [arg for url in urls for arg in ("--agent", url)]
            fp1, fp2 = fingerprint(KEY1), fingerprint(KEY2)

            # A step out of order is refused and changes nothing.
            early = await cli_run("keyring", "use", KEY2_B64, *every_agent)
            assert early.exit_code == 1
            assert "nothing changed: the key is not installed on r0" in early.output

            # 1. install everywhere
            result = await cli_run("keyring", "install", KEY2_B64, *every_agent)
            assert result.exit_code == 0, result.output
            assert result.output.count(f"installed {fp2}") == N
            await gossip_for_a_while(agents, "gossip with both keys installed")

            # 2. use everywhere
            result = await cli_run("keyring", "use", KEY2_B64, *every_agent)
            assert result.exit_code == 0, result.output
            assert all(
                a.registry._core.keyring is not None and a.registry._core.keyring.primary == KEY2
                for a in agents
            )
            assert total(agents, "auth_failures") == 0  # nothing sealed was ever refused so far
            late = service("svc-after-use", "node-x")
            await agents[2].registry.register(late)
            await wait_until(
                lambda: all(visible(a.registry, late) for a in agents), "a registration under KEY2"
            )

            still = await cli_run("keyring", "remove", KEY2_B64, *every_agent)
            assert still.exit_code == 1
            assert "still the primary key of r0" in still.output

            # 3. remove the old key everywhere
            result = await cli_run("keyring", "remove", KEY1_B64, *every_agent)
            assert result.exit_code == 0, result.output
            assert result.output.count(f"removed {fp1}") == N
            listing = await cli_run("keyring", "list", "--json", *every_agent)
            rings = [row["keys"] for row in json.loads(listing.output)["agents"]]
            assert rings == [[{"fingerprint": fp2, "primary": True}]] * N
            assert all(load_keyring_file(tmp_path / f"keyring-{i}").keys == (KEY2,) for i in range(N))

            await gossip_for_a_while(agents, "gossip with KEY2 alone")
            final = service("svc-after-remove", "node-y")
            await agents[4].registry.register(final)
            await wait_until(
                lambda: all(visible(a.registry, final) for a in agents), "a registration after remove"
            )

            # The old key opens nothing any more: a member holding only KEY1 cannot join.
            seed = f"{agents[0].registry.address[0]}:{agents[0].registry.address[1]}"
            config = Config.lan(**FAST)
            before = total(agents, "auth_failures")
            with pytest.raises(JoinError):
                async with open_registry(
                    seeds=[seed], keyring=KEY1, name="old-key", config=config, timeout=1.5
                ):
                    raise AssertionError("a member with the removed key joined")
            assert total(agents, "auth_failures") > before
            # ... while one holding KEY2 can.
            async with open_registry(
                seeds=[seed], keyring=KEY2, name="new-key", config=config, timeout=10
            ) as reg:
                await wait_until(
                    lambda: all(visible(reg, s) for s in services), "the newcomer to see everything"
                )

            assert violations == []
            await wait_until(
                lambda: all(
                    {m.name for m in a.registry.members() if m.state == "alive"} == names for a in agents
                ),
                "the cluster to be converged",
            )
            for agent in agents:
                agent.stop()
            nursery.cancel_scope.cancel()
