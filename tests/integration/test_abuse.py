"""Stream-port abuse against a real member process: memory and availability bounds.

The victim runs in its own process (:class:`~tests.integration.abuse.Victim`)
so its resident memory can be read from ``/proc``; attackers connect from
127.0.0.2. After every attack the test checks that nothing changed in the
victim's view and that the cluster still spreads a new registration through
it. Full-size runs with figures: ``scripts/bench_abuse.py``.
"""

from __future__ import annotations

import collections
import sys

import pytest
import trio

from gossipreg.core import chunks
from gossipreg.registry import open_registry

from .abuse import Victim, big_frames, idle_flood, slowloris
from .helpers import FAST, KEY, service, visible, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="reads the victim's memory from /proc and binds 127.0.0.2: Linux only",
)

#: The documented bound (docs/security.md): what unauthenticated peers can add to a member's RSS.
PRE_AUTH_BOUND_MIB = 64


async def _sample_peak(victim: Victim, peak: list[float]) -> None:
    while True:
        peak[0] = max(peak[0], victim.rss_mib())
        await trio.sleep(0.1)


async def _still_spreads(victim: Victim, tag: str) -> None:
    """A new member joins through the victim, and each sees the other's registration."""
    seed = f"{victim.address[0]}:{victim.address[1]}"
    async with open_registry("127.0.0.1:0", [seed], name=f"late-{tag}", keyring=KEY, config=FAST,
                             timeout=10) as late:
        await late.register(service(f"late-{tag}", "n1"))
        await wait_until(lambda: any(s.name == "svc-victim" for s in late.list_services()),
                         "the victim's service")
        with trio.fail_after(20):
            while f"late-{tag}" not in (await victim.stats())["services"]:  # noqa: ASYNC110 - another process
                await trio.sleep(0.1)
        assert visible(late, late_service := service(f"late-{tag}", "n1")), late_service


@pytest.mark.parametrize(
    "announced",
    [16 * 1024 * 1024 - 1, chunks.MAX_FRAME - 1],
    ids=["16MiB-frames", "largest-accepted-frames"],
)
async def test_unauthenticated_frames_cost_bounded_memory_and_leave_nothing_resident(announced: int) -> None:
    async with Victim.start() as victim:
        before = await victim.stats()
        baseline = victim.rss_mib()
        peak = [baseline]
        counts: collections.Counter[str] = collections.Counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sample_peak, victim, peak)
            await big_frames(victim.address, connections=128, announced=announced, seconds=4.0, stats=counts)
            nursery.cancel_scope.cancel()
        await trio.sleep(1.0)
        after = victim.rss_mib()
        stats = (await victim.stats())["stats"]
        assert counts["connections"] >= 128  # the attack ran
        assert peak[0] - baseline <= PRE_AUTH_BOUND_MIB, (baseline, peak[0], after)
        assert after - baseline <= PRE_AUTH_BOUND_MIB / 4, (baseline, peak[0], after)
        # Nothing got through: no message was handled, and the view is what it was.
        assert stats["stream_messages_received"] == before["stats"]["stream_messages_received"]
        assert (await victim.stats())["services"] == before["services"]
        await _still_spreads(victim, "after-frames")


async def test_a_join_succeeds_through_a_member_under_idle_flood_and_slowloris() -> None:
    async with Victim.start() as victim:
        counts: collections.Counter[str] = collections.Counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: idle_flood(victim.address, connections=5000, seconds=60, stats=counts))
            nursery.start_soon(lambda: slowloris(victim.address, per_second=13, seconds=60, stats=counts))
            with trio.fail_after(30):
                while counts["connections"] < 5000:  # noqa: ASYNC110 - counted by the attack tasks
                    await trio.sleep(0.1)
            await _still_spreads(victim, "under-flood")
            nursery.cancel_scope.cancel()
        stats = (await victim.stats())["stats"]
        assert stats["driver_streams_refused_source"] > 0  # the flood met its per-source quota
        assert stats["stream_messages_received"] > 0
