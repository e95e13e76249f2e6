"""Shared set-up for the simulation scenarios."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gossipreg.core.catalog import Key
from gossipreg.core.config import Config
from gossipreg.core.errors import NotFoundError
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeEvent
from simulations.engine import SimMember, Simulation
from simulations.metrics import Tracker

Listener = Callable[[Simulation, SimMember, NodeEvent], None]


def cluster(
    n: int,
    *,
    seed: int = 1,
    config: Config | None = None,
    join: bool = True,
    listeners: Iterable[Listener] = (),
    **kwargs: Any,
) -> tuple[Simulation, Tracker]:
    """``n`` members with a tracker; joined and converged unless ``join=False``."""
    tracker = Tracker(n)
    extra = list(listeners)

    def on_event(sim: Simulation, member: SimMember, event: NodeEvent) -> None:
        tracker.on_event(sim, member, event)
        for listener in extra:
            listener(sim, member, event)

    sim = Simulation(n, seed=seed, config=config or Config.lan(), on_event=on_event, **kwargs)
    tracker.attach(sim)
    if join:
        sim.join_all()
        sim.run_while(lambda: tracker.join_converged_at is None, limit=30.0)
        assert tracker.join_converged_at is not None, "the cluster did not converge"
    return sim, tracker


def service(name: str, node_id: str, version: str = "1.0.0") -> Service:
    """A one-node service."""
    return Service(name, version, nodes=(Node(node_id, "10.99.0.1:8080"),))


def key_of(svc: Service) -> Key:
    """The catalog key of a one-node service."""
    return (svc.name, svc.version, svc.nodes[0].id)


def visible_at(member: SimMember, svc: Service) -> bool:
    """Whether ``member``'s view (get_service) holds the node of ``svc``."""
    try:
        versions = member.core.get_service(svc.name)
    except NotFoundError:
        return False
    node_id = svc.nodes[0].id
    return any(v.version == svc.version and any(nd.id == node_id for nd in v.nodes) for v in versions)


def wait(sim: Simulation, condition: Callable[[], bool], limit: float, step: float = 0.1) -> float:
    """Run until ``condition()`` holds (checked every ``step``); the virtual seconds it took.

    Fails the test if it does not hold within ``limit`` seconds."""
    start = sim.now
    sim.run_while(lambda: not condition(), limit=limit, step=step)
    assert condition(), f"condition still false after {limit} virtual seconds"
    return sim.now - start


def records_equal(sim: Simulation) -> bool:
    """Whether every live member stores identical catalogs (``records()``)."""
    live = sim.live_members()
    first = live[0].core.catalog.records()
    return all(m.core.catalog.records() == first for m in live[1:])
