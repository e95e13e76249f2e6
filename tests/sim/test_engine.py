"""The simulator itself: scheduling, partitions, streams, restarts, pauses."""

from __future__ import annotations

from gossipreg.core.membership import MemberState
from gossipreg.core.node import SendStream, StreamId
from simulations.engine import Simulation

from .helpers import cluster, key_of, service, visible_at, wait


def test_scheduled_actions_run_at_their_time_in_order() -> None:
    sim = Simulation(3, seed=1)
    seen: list[tuple[str, float]] = []
    sim.schedule(2.5, lambda: seen.append(("b", sim.now)))
    sim.schedule(1.0, lambda: seen.append(("a", sim.now)))
    sim.schedule(2.5, lambda: seen.append(("c", sim.now)))
    sim.run_until(2.0)
    assert seen == [("a", 1.0)]
    sim.run_until(3.0)
    assert seen == [("a", 1.0), ("b", 2.5), ("c", 2.5)]
    assert sim.now == 3.0


def test_partition_groups_and_members_added_later() -> None:
    sim = Simulation(4, seed=1)
    sim.partition(["m0000"], ["m0001"])
    assert not sim.connected("m0000", "m0001")
    assert sim.connected("m0002", "m0003")  # the unnamed rest is one group
    assert not sim.connected("m0000", "m0002")
    sim.add_member("late")
    assert sim.connected("late", "m0002")  # joins the unnamed group
    assert not sim.connected("late", "m0000")
    sim.heal()
    assert sim.connected("late", "m0000")


def test_streams_are_fifo_whatever_the_jitter() -> None:
    sim = Simulation(2, seed=3, latency=(0.001, 0.050), crypto=False)
    a, b = sim.members["m0000"], sim.members["m0001"]
    got: list[bytes] = []

    def receive(stream: StreamId, address: tuple[str, int], data: bytes, now: float) -> bool:
        got.append(data)
        return True

    b.core.receive_stream = receive  # type: ignore[method-assign]
    sid: StreamId = ("out", 999)
    sent = [bytes([i]) for i in range(50)]
    for data in sent:
        sim._send_stream(a, SendStream(sid, b.address, data))
    sim.run_for(1.0)
    assert got == sent


def test_same_seed_same_trace_with_crypto() -> None:
    def trace(seed: int) -> str:
        sim = Simulation(8, seed=seed)
        sim.join_all()
        sim.run_for(5.0)
        return sim.trace_hash

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_paused_member_declared_dead_refutes_on_resume() -> None:
    """A long GC pause: the member is declared dead while its process is up; when it
    resumes, the accusations waiting in its socket buffer make it refute, and it and
    its services come back everywhere."""
    sim, tracker = cluster(20, seed=4)
    name = "m0005"
    svc = service("paused-svc", f"{name}-1")
    sim.register(name, svc)
    wait(sim, lambda: tracker.everywhere(key_of(svc)), limit=5.0)
    sim.pause(name, 20.0)
    wait(sim, lambda: tracker.all_hold(name, MemberState.DEAD), limit=20.0)
    assert tracker.false_dead == len(tracker.live) - 1  # everyone, for now
    assert tracker.key_holders(key_of(svc)) == {name}  # gone from every view but its own
    sim.run_until(sim.members[name].paused_until)
    wait(sim, lambda: tracker.all_hold(name, MemberState.ALIVE), limit=10.0)
    assert tracker.false_dead == 0
    assert tracker.false_dead_events == len(tracker.live) - 1
    assert sim.members[name].core.membership.local.incarnation > 0
    for m in sim.live_members():
        assert visible_at(m, svc), m.name


def test_crashed_member_receives_nothing_and_restart_gets_new_datagrams() -> None:
    sim, tracker = cluster(5, seed=5)
    sim.crash("m0003")
    before = sim.stats["to_down"]
    sim.run_for(2.0)
    assert sim.stats["to_down"] > before  # probes of it went nowhere
    tracker.restart("m0003", ["m0000"])
    assert sim.members["m0003"].generation == 1
    wait(sim, lambda: tracker.all_hold("m0003", MemberState.ALIVE), limit=60.0)
