"""The agent's Prometheus metrics (``GET /v1/metrics``), with ``prometheus_client``.

Each agent has its own ``CollectorRegistry`` (:class:`AgentMetrics`, made at
its first scrape) holding:

* the member's metrics: :class:`gossipreg.metrics.RegistryCollector`
  (``gossipreg_info``, ``gossipreg_members{state}``, a counter per statistic,
  the latency histograms);
* the agent's own (:class:`AgentCollector`): ``gossipreg_services``,
  ``gossipreg_keyring_keys``, ``gossipreg_http_responses_total{code}`` and the
  HTTP server's connection, stream, eviction, refusal and timeout counts;
* the process's: ``process_*`` (CPU, memory, open files; where ``/proc``
  exists), ``python_info``, ``python_gc_*``.

:func:`exposition` renders them (``prometheus_client.generate_latest``) in the
text format of :data:`CONTENT_TYPE`. It runs on the trio thread, like every
handler: collecting reads counters the member keeps and takes well under a
millisecond for a few hundred members.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Protocol

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..metrics import RegistryCollector
from ..registry import AsyncRegistry
from .checks import CheckStatus
from .http import HTTPServer
from .keyring import KeyringManager

__all__ = ["CONTENT_TYPE", "AgentCollector", "AgentMetrics", "MetricsOwner", "exposition"]

#: Content type of :func:`exposition`'s text (``prometheus_client.CONTENT_TYPE_LATEST``).
CONTENT_TYPE: str = prometheus_client.CONTENT_TYPE_LATEST


class MetricsOwner(Protocol):
    """What the agent's metrics read: the API's member, keyring manager and HTTP server."""

    @property
    def registry(self) -> AsyncRegistry:
        """The running member."""
        ...

    @property
    def keyring(self) -> KeyringManager:
        """Its keyring management."""
        ...

    @property
    def server(self) -> HTTPServer:
        """The API's HTTP server."""
        ...

    @property
    def checks(self) -> Mapping[str, CheckStatus]:
        """The agent's service-file checks, by file."""
        ...


class AgentCollector(Collector):
    """The agent's own metrics: services in view, keyring size, and its HTTP server's counts.

    Args:
        owner: the agent API (:class:`~gossipreg.agent.api.AgentAPI`).
    """

    def __init__(self, owner: MetricsOwner) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        """The agent's metric families now."""
        owner = self.owner
        try:
            services = len(owner.registry.list_services())
        except Exception:  # closed while shutting down: the member's metrics are gone too
            services = None
        if services is not None:
            yield GaugeMetricFamily(
                "gossipreg_services", "Services (name, version) in this member's view.", value=services
            )
        ring = owner.keyring.keyring
        yield GaugeMetricFamily(
            "gossipreg_keyring_keys",
            "Keys in this member's keyring (0 when it runs insecure).",
            value=len(ring) if ring is not None else 0,
        )
        server = owner.server
        answers = CounterMetricFamily(
            "gossipreg_http_responses",
            "Answers the agent API sent, by HTTP status code.",
            labels=["code"],
        )
        for code, n in sorted(server.requests.items()):
            answers.add_metric([str(code)], n)
        yield answers
        yield GaugeMetricFamily(
            "gossipreg_http_connections", "Connections the agent API serves now.", value=server.connections
        )
        yield GaugeMetricFamily(
            "gossipreg_http_streams", "Streamed answers (watches) in progress.", value=server.streams
        )
        for name, text, value in (
            (
                "gossipreg_http_evictions",
                "Connections waiting for a request closed to make room for a new one (connection limit).",
                server.evictions,
            ),
            (
                "gossipreg_http_refused",
                "Connections answered 503 because every slot was running a handler.",
                server.refused,
            ),
            (
                "gossipreg_http_streams_refused",
                "Streamed answers (watches) refused with 503 over the stream limit.",
                server.streams_refused,
            ),
            (
                "gossipreg_http_timeouts",
                "Requests that did not arrive in time (answered 408).",
                server.timeouts,
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)
        checks = list(owner.checks.values())
        runs = CounterMetricFamily(
            "gossipreg_service_checks", "Runs of the agent's service-file checks, by file.", labels=["file"]
        )
        failures = CounterMetricFamily(
            "gossipreg_service_check_failures", "Failed runs of the agent's service-file checks, by file.",
            labels=["file"],
        )
        for c in checks:
            runs.add_metric([c.file], c.runs)
            failures.add_metric([c.file], c.failures)
        yield runs
        yield failures
        yield GaugeMetricFamily(
            "gossipreg_service_checks_failing",
            "Service-file checks failing now (their registrations are not renewed).",
            value=sum(c.status == "failing" for c in checks),
        )


class AgentMetrics:
    """One agent's ``CollectorRegistry``: the member's, the agent's and the process's metrics.

    Args:
        owner: the agent API. Make this on the member's trio thread.
    """

    def __init__(self, owner: MetricsOwner) -> None:
        self.collectors = CollectorRegistry()
        """Everything ``/v1/metrics`` shows."""
        self.member = RegistryCollector(owner.registry)
        """The member's collector."""
        self.collectors.register(self.member)
        self.collectors.register(AgentCollector(owner))
        prometheus_client.ProcessCollector(registry=self.collectors)
        prometheus_client.PlatformCollector(registry=self.collectors)
        prometheus_client.GCCollector(registry=self.collectors)

    def generate(self) -> bytes:
        """The exposition text (:data:`CONTENT_TYPE`) of every metric now."""
        return prometheus_client.generate_latest(self.collectors)


_BY_OWNER: weakref.WeakKeyDictionary[MetricsOwner, AgentMetrics] = weakref.WeakKeyDictionary()


def exposition(owner: MetricsOwner) -> bytes:
    """The ``/v1/metrics`` text of the agent API ``owner`` (its :class:`AgentMetrics`,
    made at the first call and kept as long as ``owner`` lives)."""
    found = _BY_OWNER.get(owner)
    if found is None:
        found = _BY_OWNER[owner] = AgentMetrics(owner)
    return found.generate()
