"""Ten real members in one process, on 127.0.0.1: join, registry, failure detection, leave."""

from __future__ import annotations

from functools import partial

import trio

from gossipreg.core.errors import NotFoundError
from gossipreg.registry import AsyncRegistry

from .helpers import Crashable, alive, cluster, seed_of, service, states, visible, wait_until

N = 10


def everywhere(regs: list[AsyncRegistry], pred: object) -> bool:
    assert callable(pred)
    return all(pred(r) for r in regs)


async def test_ten_members_join_register_and_deregister() -> None:
    with trio.fail_after(60):
        async with cluster(N) as regs:
            names = {r.name for r in regs}
            for r in regs:
                assert alive(r) == names
                assert states(r) == dict.fromkeys(names, "alive")
                assert r.statistics()["auth_failures"] == 0

            svc = service("greeter", "g1")
            await regs[3].register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the service everywhere")
            for r in regs:
                [found] = r.get_service("greeter")
                assert found.version == "1.0.0"
                assert [n.id for n in found.nodes] == ["g1"]
                assert [s.name for s in r.list_services()] == ["greeter"]

            await regs[3].deregister(svc)
            await wait_until(lambda: not any(visible(r, svc) for r in regs), "the service gone everywhere")
            for r in regs:
                assert r.list_services() == []
                try:
                    r.get_service("greeter")
                except NotFoundError:
                    pass
                else:
                    raise AssertionError(f"{r.name} still lists greeter")


async def test_registrations_of_many_members_merge() -> None:
    with trio.fail_after(60):
        async with cluster(N) as regs:
            svcs = [service("api", f"api-{i}") for i in range(N)]
            for r, s in zip(regs, svcs, strict=True):
                await r.register(s)

            def complete(r: AsyncRegistry) -> bool:
                try:
                    [api] = r.get_service("api")
                except NotFoundError:
                    return False
                return {n.id for n in api.nodes} == {s.nodes[0].id for s in svcs}

            await wait_until(lambda: all(complete(r) for r in regs), "every node of api everywhere")


async def test_ttl_registration_expires_everywhere_without_renewal() -> None:
    with trio.fail_after(60):
        async with cluster(N) as regs:
            svc = service("lease", "l1")
            await regs[5].register(svc, ttl=1)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the leased service everywhere")
            await wait_until(lambda: not any(visible(r, svc) for r in regs), "the lease to expire everywhere")
            assert all(r.list_services() == [] for r in regs)
            # The owner is still alive: only the lease ended.
            assert all(alive(r) == {x.name for x in regs} for r in regs)


async def test_keep_alive_keeps_a_ttl_registration_until_cancelled() -> None:
    with trio.fail_after(60):
        async with cluster(N) as regs:
            svc = service("kept", "k1")
            ttl = 1.0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(regs[2].keep_alive, svc, ttl)
                await wait_until(lambda: all(visible(r, svc) for r in regs), "the kept service everywhere")
                # Over several leases, every member keeps seeing it (at each 50 ms sample).
                for _ in range(int(3 * ttl / 0.05)):
                    missing = [r.name for r in regs if not visible(r, svc)]
                    assert not missing, f"renewed lease missing at {missing}"
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            await wait_until(lambda: not any(visible(r, svc) for r in regs), "the lease to end after renewal")


async def test_watch_with_snapshot_yields_the_existing_service_first() -> None:
    with trio.fail_after(60):
        async with cluster(N) as regs:
            svc = service("watched", "w1")
            await regs[0].register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the service everywhere")
            async with regs[7].watch("watched", snapshot=True) as watcher:
                first = await watcher.next()
                assert first.action == "create"
                assert first.service.name == "watched"
                assert [n.id for n in first.service.nodes] == ["w1"]
                # Then live changes follow, from another member's registration.
                second = service("watched", "w2")
                await regs[4].register(second)
                nxt = await watcher.next()
                assert nxt.action == "create"
                assert [n.id for n in nxt.service.nodes] == ["w2"]
                await regs[0].deregister(svc)
                gone = await watcher.next()
                assert gone.action == "delete"
                assert [n.id for n in gone.service.nodes] == ["w1"]
            # A watch without snapshot starts empty.
            async with regs[7].watch("watched") as plain:
                assert plain.next_nowait() is None


async def test_abruptly_stopped_member_ends_dead_and_its_services_vanish() -> None:
    with trio.fail_after(60):
        async with cluster(N - 1) as regs, trio.open_nursery() as nursery:
            victim = Crashable()
            await nursery.start(partial(victim.run, [seed_of(regs[0])], name="victim"))
            everyone = [*regs, victim.reg]
            names = {r.name for r in everyone}
            await wait_until(lambda: all(alive(r) == names for r in everyone), "the victim to join")
            svc = service("fragile", "f1")
            await victim.reg.register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the victim's service everywhere")

            await victim.crash()
            await wait_until(
                lambda: all(states(r).get("victim") == "dead" for r in regs), "the victim DEAD everywhere"
            )
            for r in regs:
                assert not visible(r, svc)
                assert r.list_services() == []
                assert alive(r) == names - {"victim"}
            assert sum(r.statistics()["probes_failed"] for r in regs) > 0


async def _joined_member(regs: list[AsyncRegistry], nursery: trio.Nursery, name: str) -> Crashable:
    member = Crashable()
    await nursery.start(partial(member.run, [seed_of(regs[0])], name=name))
    everyone = [*regs, member.reg]
    names = {r.name for r in everyone}
    await wait_until(lambda: all(alive(r) == names for r in everyone), f"{name} to join")
    return member


async def test_gracefully_closed_member_ends_left_and_its_services_vanish() -> None:
    with trio.fail_after(60):
        async with cluster(N - 1) as regs, trio.open_nursery() as nursery:
            leaver = await _joined_member(regs, nursery, "leaver")
            svc = service("polite", "p1")
            await leaver.reg.register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the leaver's service everywhere")

            await leaver.close()
            await wait_until(
                lambda: all(states(r).get("leaver") == "left" for r in regs), "the leaver LEFT everywhere"
            )
            for r in regs:
                assert not visible(r, svc)
                assert r.list_services() == []
                assert alive(r) == {x.name for x in regs}


async def test_member_cancelled_from_outside_still_leaves_gracefully() -> None:
    """Regression (fixed in 79bc80a): cancelling the task that runs open_registry once lost the leave,
    since the driver's sender task was cancelled with it; the others saw the member DEAD."""
    with trio.fail_after(60):
        async with cluster(N - 1) as regs, trio.open_nursery() as nursery:
            leaver = await _joined_member(regs, nursery, "leaver")
            svc = service("cancelled", "c1")
            await leaver.reg.register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the leaver's service everywhere")
            await leaver.cancel()
            # The leave goes out at once: LEFT is seen before a failure detector could say DEAD.
            await wait_until(
                lambda: any(states(r).get("leaver") in ("left", "dead") for r in regs), "a verdict", limit=30
            )
            assert {states(r).get("leaver") for r in regs} <= {"left", "suspect", "alive"}
            await wait_until(
                lambda: all(states(r).get("leaver") == "left" for r in regs), "the leaver LEFT everywhere"
            )
            assert not any(visible(r, svc) for r in regs)
