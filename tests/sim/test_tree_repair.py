"""The broadcast tree's repair (``Config.tree_resends``) under datagram loss, on the simulator.

Virtual time only. Without the repair a lost tree datagram cuts off its
child's subtree, whose members wait for random gossip (a gossip round is
``gossip_interval``, 0.2 s in the LAN profile); with it, the sender re-sends
after ``tree_ack_timeout`` until the child acknowledges, so every member
should hold a registration within the tree's depth in link latencies plus a
few re-sends, far inside one gossip interval.
"""

from __future__ import annotations

import math
import random

from gossipreg.core.catalog import CatalogEvent, Key
from gossipreg.core.config import Config
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeEvent
from simulations.engine import SimMember, Simulation

N = 200
LOSS = 0.1
LATENCY = (0.001, 0.005)
#: Losses on one member's path from the root that the bound allows for; at 10 % loss and a
#: path of 4 hops, five or more (each datagram or its re-send lost) happen to one member in
#: about 10^-4 of cases, a few times rarer than the 1-in-200 this bound must cover.
LOSSES_ALLOWED = 4


def spread_bound(config: Config, n: int) -> float:
    """Every member reached down the tree: ``ceil(log_b n)`` hops of the longest link
    latency, plus ``LOSSES_ALLOWED`` re-sends on the way, each costing the ack timeout and
    one more link latency. With the LAN profile at 200 members: 4 x 5 ms + 4 x 15 ms."""
    hops = math.ceil(math.log(n, config.gossip_nodes + 1) - 1e-9)
    return hops * LATENCY[1] + LOSSES_ALLOWED * (config.tree_ack_timeout + LATENCY[1])


def spread_times(config: Config, *, seed: int = 7, registrations: int = 5) -> list[float]:
    """Seconds until the last member holds each of ``registrations`` new registrations,
    made 0.5 s apart by random members of a warm ``N``-member cluster at ``LOSS``."""
    arrivals: dict[Key, set[str]] = {}
    done: dict[Key, float] = {}
    started: dict[Key, float] = {}

    def on_event(sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        if isinstance(event, CatalogEvent) and event.record.key in arrivals:
            got = arrivals[event.record.key]
            got.add(member.name)
            if len(got) == N and event.record.key not in done:
                done[event.record.key] = sim.now - started[event.record.key]

    sim = Simulation(N, seed=seed, config=config, latency=LATENCY, loss=LOSS, crypto=False,
                     on_event=on_event)
    sim.bootstrap()
    sim.run_until(1.0)
    rng = random.Random(seed)
    for i, owner in enumerate(rng.sample(sorted(sim.members), registrations)):
        svc = Service(f"s{i}", "1", nodes=(Node(f"{owner}-{i}", "10.9.0.1:80"),))
        key = (svc.name, svc.version, svc.nodes[0].id)
        arrivals[key] = {owner}
        started[key] = sim.now
        sim.register(owner, svc)
        sim.run_for(0.5)
    sim.run_for(5.0)
    assert len(done) == registrations, "a registration did not reach every member"
    return [done[k] for k in arrivals]


def test_with_the_repair_every_member_holds_a_registration_within_the_tree_bound() -> None:
    config = Config.lan()
    bound = spread_bound(config, N)
    assert bound < config.gossip_interval / 2  # the bound leaves no room for a gossip round
    times = spread_times(config)
    assert max(times) <= bound, (times, bound)


def test_without_the_repair_the_same_run_waits_for_gossip() -> None:
    # The same cluster and registrations with the repair off: a lost tree datagram leaves
    # its subtree to random gossip, and the last member is later than the bound.
    config = Config.lan(tree_resends=0)
    times = spread_times(config)
    assert max(times) > spread_bound(Config.lan(), N), times
