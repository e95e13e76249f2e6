"""gossipreg.metrics on embedded members (no agent): the collector and the metrics server.

The collector is checked on a memory cluster under ``autojump_clock``; serving
is checked for real, over HTTP on 127.0.0.1 port 0: from a sync
:class:`gossipreg.Registry` (the HTTP thread reads it through the registry's
own thread hop) and from a trio member (the HTTP thread reads it through
``trio.from_thread``).
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import prometheus_client
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import gossipreg
import gossipreg.metrics
from gossipreg import Member, Node, Registry, Service
from gossipreg.metrics import COUNTERS, GENERIC_HELP, RegistryCollector, counter_name, register_collector
from gossipreg.testing import FAST_CONFIG, cluster, wait_until

Families = dict[str, prometheus_client.Metric]


def parse(text: str) -> Families:
    return {f.name: f for f in text_string_to_metric_families(text)}


def scrape(collector: RegistryCollector) -> Families:
    target = CollectorRegistry()
    target.register(collector)
    return parse(generate_latest(target).decode())


def value(families: Families, family: str, sample: str | None = None, **labels: str) -> float:
    name = sample or family
    found = [s.value for s in families[family].samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (family, name, labels, families[family].samples)
    return found[0]


def buckets(samples: Sequence[Sample], name: str) -> list[tuple[float, float]]:
    return [(float(s.labels["le"]), s.value) for s in samples if s.name == f"{name}_bucket"]


GREETER = Service("greeter", "1.0", nodes=(Node("g1", "10.0.0.1:8080"), Node("g2", "10.0.0.2:8080")))


def test_importing_gossipreg_does_not_import_prometheus_client() -> None:
    code = "import sys, gossipreg, gossipreg.testing; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_the_collector_of_an_embedded_member(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster(3) as [a, b, _c]:
        await a.register(GREETER)
        await wait_until(lambda: bool(b.list_services()), "b sees the registration")
        await trio.sleep(5)  # some probes
        families = scrape(RegistryCollector(b))
        stats = b.statistics()

    assert value(families, "gossipreg_info", member="m1", version=gossipreg.__version__) == 1
    assert value(families, "gossipreg_members", state="alive") == 3
    assert value(families, "gossipreg_members", state="dead") == 0
    assert families["gossipreg_awareness"].type == "gauge"
    assert families["gossipreg_broadcast_queue"].type == "gauge"
    # Every statistic that is not a gauge is a counter with its own help text.
    gauges = {"members_alive", "members_suspect", "members_dead", "members_left", *gossipreg.metrics.GAUGES}
    for key in set(stats) - gauges:
        family = families[counter_name(key)]
        assert family.type == "counter", key
        assert family.documentation == COUNTERS[key], key
        assert value(families, counter_name(key), counter_name(key) + "_total") == stats[key]
    assert "gossipreg_sent_bytes" in families
    assert "gossipreg_stream_received_bytes" in families
    assert value(families, "gossipreg_probes_acked", "gossipreg_probes_acked_total") > 0
    # The histograms: b probed, pushed-pulled at its join, and merged two new records.
    rtt = families["gossipreg_probe_rtt_seconds"]
    assert rtt.type == "histogram"
    assert value(families, "gossipreg_probe_rtt_seconds", "gossipreg_probe_rtt_seconds_count") == (
        stats["probes_acked"]
    )
    spread = buckets(families["gossipreg_spread_seconds"].samples, "gossipreg_spread_seconds")
    assert spread[-1] == (math.inf, 2.0)  # +Inf: the two records merged
    assert [n for _, n in spread] == sorted(n for _, n in spread)  # cumulative
    pp = "gossipreg_push_pull_duration_seconds"
    assert value(families, pp, pp + "_count") >= 1


async def test_a_closed_member_yields_no_metrics(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster(2) as [a, _b]:
        collector = RegistryCollector(a)
        assert list(collector.collect())
    assert list(collector.collect()) == []


class _Source:
    """A front end with a statistic this version does not know, and no histograms."""

    name = "fake"

    def statistics(self) -> dict[str, int]:
        return {"probes_sent": 3, "frobs_widgeted": 7, "frob_bytes_sent": 9}

    def members(self) -> list[Member]:
        return [
            Member("fake", ("10.0.0.1", 1), "alive", 0, {}),
            Member("other", ("10.0.0.2", 1), "suspect", 2, {}),
        ]


def test_unknown_statistics_are_exported_with_a_generic_help_and_members_are_counted() -> None:
    families = scrape(RegistryCollector(_Source()))
    assert families["gossipreg_frobs_widgeted"].type == "counter"
    assert families["gossipreg_frobs_widgeted"].documentation == GENERIC_HELP.format(key="frobs_widgeted")
    assert value(families, "gossipreg_frobs_widgeted", "gossipreg_frobs_widgeted_total") == 7
    assert value(families, "gossipreg_frob_sent_bytes", "gossipreg_frob_sent_bytes_total") == 9
    assert families["gossipreg_probes_sent"].documentation == COUNTERS["probes_sent"]
    # No members_<state> statistics: counted from members().
    assert value(families, "gossipreg_members", state="alive") == 1
    assert value(families, "gossipreg_members", state="suspect") == 1
    assert not [n for n in families if n.endswith("_seconds")]  # no histograms to show


def test_one_member_per_collector_registry() -> None:
    target = CollectorRegistry()
    register_collector(_Source(), target)
    with pytest.raises(ValueError, match="Duplicated"):
        register_collector(_Source(), target)


def test_register_collector_defaults_to_the_global_registry() -> None:
    collector = register_collector(_Source())
    try:
        text = generate_latest(prometheus_client.REGISTRY).decode()
        assert 'gossipreg_info{member="fake"' in text
        assert "python_info" in text  # the global registry's own collectors are still there
    finally:
        prometheus_client.REGISTRY.unregister(collector)


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def observed(families: Families) -> bool:
    """Two records merged and a probe acked, as the histograms show."""
    spread = value(families, "gossipreg_spread_seconds", "gossipreg_spread_seconds_count")
    rtt = value(families, "gossipreg_probe_rtt_seconds", "gossipreg_probe_rtt_seconds_count")
    return spread == 2 and rtt > 0


def test_serve_metrics_of_a_sync_registry() -> None:
    with Registry("127.0.0.1:0", name="s0", insecure=True, config=FAST_CONFIG, handle_signals=False) as seed:
        host, port = seed.address
        with Registry("127.0.0.1:0", [f"{host}:{port}"], name="s1", insecure=True, config=FAST_CONFIG,
                      handle_signals=False) as member:
            seed.register(GREETER)
            with gossipreg.metrics.serve_metrics(member, 0, "127.0.0.1") as server:
                url = f"http://127.0.0.1:{server.port}/metrics"
                give_up = time.monotonic() + 20
                while not observed(parse(_get(url)[1])):  # the record and an acked probe
                    assert time.monotonic() < give_up, "no spread or probe round trip observed"
                    time.sleep(0.05)  # real sockets and time: poll the scrape
                content_type, text = _get(url)
                assert content_type.startswith("text/plain; version=")  # negotiated by prometheus_client
                families = parse(text)
                assert value(families, "gossipreg_info", member="s1", version=gossipreg.__version__) == 1
                assert value(families, "gossipreg_members", state="alive") == 2
                assert "python_info" in families
                assert "python_gc_objects_collected" in families
                if sys.platform.startswith("linux"):
                    assert value(families, "process_resident_memory_bytes") > 0
            # Closed: the port no longer answers.
            with pytest.raises(urllib.error.URLError, match="refused"):
                _get(url)


async def test_serve_metrics_of_a_trio_member_reads_it_on_the_trio_thread() -> None:
    with trio.fail_after(30):
        async with cluster(2, config=FAST_CONFIG) as [a, b]:
            await a.register(GREETER)
            await wait_until(lambda: bool(b.list_services()), "b sees the registration")
            server = gossipreg.metrics.serve_metrics(b, 0, "127.0.0.1")
            try:
                url = f"http://127.0.0.1:{server.port}/metrics"
                content_type, text = await trio.to_thread.run_sync(_get, url)
            finally:
                await server.aclose()
            families = parse(text)
            assert content_type.startswith("text/plain; version=")
            assert value(families, "gossipreg_info", member="m1", version=gossipreg.__version__) == 1
            assert value(families, "gossipreg_spread_seconds", "gossipreg_spread_seconds_count") == 2
            assert value(families, "gossipreg_catalog_merged", "gossipreg_catalog_merged_total") == (
                b.statistics()["catalog_merged"]
            )


def test_every_metric_of_a_member_is_in_the_operations_guide() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    names = [f"{counter_name(k)}_total" for k in COUNTERS]
    names += [name for name, _ in gossipreg.metrics.GAUGES.values()]
    names += [name for name, _ in gossipreg.metrics.HISTOGRAMS.values()]
    names += ["gossipreg_info", "gossipreg_members"]
    missing = [n for n in names if f"`{n}" not in guide]
    assert not missing, f"docs/operations.md does not list {missing}"
    for key, text in COUNTERS.items():
        assert text in guide, f"the help of {key} in docs/operations.md is not the code's"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_metrics_port_option_serves_the_members_metrics_while_the_registry_is_open() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with Registry("127.0.0.1:0", name="served", insecure=True, handle_signals=False, metrics_port=port):
        content_type, text = _get(url)
        assert content_type.startswith("text/plain; version=")  # negotiated on Accept
        families = {f.name: f for f in text_string_to_metric_families(text)}
        [info] = families["gossipreg_info"].samples
        assert info.labels["member"] == "served"
        assert "process_resident_memory_bytes" in text or sys.platform != "linux"
    with pytest.raises(urllib.error.URLError):
        _get(url)  # closed with the registry


def test_the_metrics_port_option_of_the_asyncio_registry() -> None:
    import asyncio

    import gossipreg.aio

    port = _free_port()

    async def main() -> str:
        async with gossipreg.aio.open_registry("127.0.0.1:0", name="aio-served", insecure=True,
                                               metrics_port=port):
            return await asyncio.to_thread(lambda: _get(f"http://127.0.0.1:{port}/metrics")[1])

    text = asyncio.run(main())
    assert 'gossipreg_info{member="aio-served"' in text
    assert "gossipreg_probe_rtt_seconds_bucket" in text  # the histograms too, from the snapshot
