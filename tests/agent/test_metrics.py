"""The agent's ``/v1/metrics``: Prometheus text made by prometheus_client, parsed back with its parser."""

from __future__ import annotations

import sys
from pathlib import Path

import prometheus_client
import trio
from prometheus_client.parser import text_string_to_metric_families

import gossipreg
from gossipreg.metrics import COUNTERS, GAUGES, GENERIC_HELP, HISTOGRAMS, counter_name

from .helpers import request, service, start_agent, visible, wait_until

#: Every metric of the agent itself, with its type (the member's are checked against its statistics).
AGENT_METRICS = {
    "gossipreg_services": "gauge",
    "gossipreg_keyring_keys": "gauge",
    "gossipreg_http_responses": "counter",
    "gossipreg_http_connections": "gauge",
    "gossipreg_http_streams": "gauge",
    "gossipreg_http_evictions": "counter",
    "gossipreg_http_refused": "counter",
    "gossipreg_http_streams_refused": "counter",
    "gossipreg_http_timeouts": "counter",
}


def sample(family: prometheus_client.Metric, name: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


async def test_metrics_of_an_agent_in_a_small_cluster() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            first = await start_agent(nursery, name="a0")
            host, gport = first.registry.address
            second = await start_agent(nursery, name="a1", join=(f"{host}:{gport}",))
            port = second.http_port
            assert port is not None
            assert first.http_port is not None
            await wait_until(lambda: len(second.registry.members()) == 2, "two members")
            # Its join's push-pull is over: the record below comes by gossip, a spread to observe.
            await wait_until(lambda: second.registry.statistics()["push_pulls_completed"] > 0, "joined")
            greeter = service("greeter", "g1")
            done = await request(
                first.http_port, "PUT", "/v1/services", json_body=greeter.to_dict(),
                token=first.prepared.http_token,
            )
            assert done.status == 200
            await wait_until(lambda: visible(second.registry, greeter), "a1 sees the registration")
            await wait_until(lambda: second.registry.statistics()["probes_acked"] > 0, "a probe acked")
            assert (await request(port, "GET", "/v1/nothing")).status == 404

            reply = await request(port, "GET", "/v1/metrics")
            stats = second.registry.statistics()
            second.stop()
            first.stop()

    assert reply.status == 200
    assert reply.headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    for family in families.values():
        assert family.documentation.strip(), f"{family.name} has no help text"

    # The member.
    info = families["gossipreg_info"]
    assert sample(info, "gossipreg_info", member="a1", version=gossipreg.__version__) == 1
    members = families["gossipreg_members"]
    assert members.type == "gauge"
    assert sample(members, "gossipreg_members", state="alive") == 2
    assert sample(members, "gossipreg_members", state="dead") == 0
    for _key, (name, _text) in GAUGES.items():
        assert families[name].type == "gauge", name
    gauges = {f"members_{s}" for s in ("alive", "suspect", "dead", "left")} | set(GAUGES)
    for key in sorted(set(stats) - gauges):  # driver_* included
        family = families[counter_name(key)]
        assert family.type == "counter", key
        assert family.documentation == COUNTERS[key], key
        assert not family.documentation.startswith(GENERIC_HELP.split("{")[0]), key
    assert sample(families["gossipreg_sent_bytes"], "gossipreg_sent_bytes_total") > 0
    assert sample(families["gossipreg_probes_acked"], "gossipreg_probes_acked_total") > 0

    # The histograms: a1 probed a0, pushed-pulled at its join, and merged a0's record.
    for key, (name, text) in HISTOGRAMS.items():
        family = families[name]
        assert family.type == "histogram", name
        assert family.documentation == text
        bounds = [s for s in family.samples if s.name == f"{name}_bucket"]
        assert len(bounds) > 5, key
        assert bounds[-1].labels["le"] == "+Inf"
        counts = [s.value for s in bounds]
        assert counts == sorted(counts), f"{name}: buckets not cumulative"
        assert counts[-1] == sample(family, f"{name}_count") > 0, key
        assert sample(family, f"{name}_sum") >= 0
    spread = families["gossipreg_spread_seconds"]
    assert sample(spread, "gossipreg_spread_seconds_count") == 1  # one record, merged once
    assert sample(spread, "gossipreg_spread_seconds_sum") < 5  # seconds, on one host

    # The agent's own metrics.
    for name, kind in AGENT_METRICS.items():
        assert families[name].type == kind, name
    assert sample(families["gossipreg_services"], "gossipreg_services") == 1
    assert sample(families["gossipreg_keyring_keys"], "gossipreg_keyring_keys") == 0  # insecure
    answers = families["gossipreg_http_responses"]
    assert sample(answers, "gossipreg_http_responses_total", code="404") == 1
    assert sample(families["gossipreg_http_connections"], "gossipreg_http_connections") >= 1

    # The process's.
    assert "python_info" in families
    assert "python_gc_objects_collected" in families
    if sys.platform.startswith("linux"):
        assert sample(families["process_resident_memory_bytes"], "process_resident_memory_bytes") > 0
        assert families["process_cpu_seconds"].type == "counter"


async def test_each_agent_has_its_own_metrics() -> None:
    """Two agents in one process: each /v1/metrics shows its own member (no global registry)."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a = await start_agent(nursery, name="x0")
            b = await start_agent(nursery, name="x1")
            assert a.http_port is not None
            assert b.http_port is not None
            texts = [
                (await request(p, "GET", "/v1/metrics")).body.decode() for p in (a.http_port, b.http_port)
            ]
            again = (await request(a.http_port, "GET", "/v1/metrics")).body.decode()
            a.stop()
            b.stop()
    assert 'gossipreg_info{member="x0"' in texts[0]
    assert 'gossipreg_info{member="x1"' in texts[1]
    assert "x1" not in texts[0]
    # The second scrape counts the first's answer.
    assert 'gossipreg_http_responses_total{code="200"} 1.0' in again


def test_every_agent_metric_is_in_the_operations_guide() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name, kind in AGENT_METRICS.items():
        assert f"`{name}_total" in guide if kind == "counter" else f"`{name}`" in guide, name
