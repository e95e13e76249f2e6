"""Prometheus metrics of a gossipreg member (needs the ``metrics`` extra).

Install with ``pip install 'gossipreg[metrics]'`` (it adds ``prometheus_client``,
which has no dependencies of its own) and import this module explicitly:
``import gossipreg.metrics``. The rest of gossipreg never imports it.

:class:`RegistryCollector` is a ``prometheus_client`` custom collector over a
running member (:class:`gossipreg.AsyncRegistry`, :class:`gossipreg.Registry`,
:class:`gossipreg.aio.AsyncioRegistry` or :class:`gossipreg.testing.MemoryRegistry`).
At each scrape it reads the member's :meth:`~gossipreg.AsyncRegistry.statistics`
and latency histograms and yields:

* ``gossipreg_info{member, version}``: always 1, names the member;
* gauges for current values: ``gossipreg_members{state}`` (members known by
  state, this one included), ``gossipreg_incarnation``, ``gossipreg_awareness``,
  ``gossipreg_broadcast_queue``;
* a counter ``gossipreg_<statistic>_total`` for every other statistic, with a
  help text saying what it counts; byte counts end in ``_bytes_total``
  (``bytes_sent`` is ``gossipreg_sent_bytes_total``). A statistic this version
  does not describe is still exported, as a counter with a generic help text;
* histograms ``gossipreg_probe_rtt_seconds``,
  ``gossipreg_push_pull_duration_seconds`` and ``gossipreg_spread_seconds``
  (see :mod:`gossipreg.core.observe`).

``docs/operations.md`` lists every metric and what to alert on.

Exposing them:

* :func:`register_collector` adds a member's collector to a
  ``prometheus_client.CollectorRegistry`` (default: the global ``REGISTRY``,
  which programs already serving Prometheus metrics expose);
* :func:`serve_metrics` serves a member's metrics (with the process's) on a
  port of their own, from a thread, and returns a :class:`MetricsServer` to
  close. Sync programs call it with their :class:`gossipreg.Registry`; trio
  programs with their :class:`~gossipreg.AsyncRegistry`, inside its trio run
  (scrapes then run on the trio thread through ``trio.from_thread``, and
  :meth:`MetricsServer.aclose` closes without blocking the loop); asyncio
  programs with their :class:`~gossipreg.aio.AsyncioRegistry` (its reads are
  snapshots, safe from any thread).

Example::

    import gossipreg, gossipreg.metrics

    reg = gossipreg.Registry(...)
    server = gossipreg.metrics.serve_metrics(reg, 9464)   # http://host:9464/metrics
    ...
    server.close()
    reg.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import prometheus_client
import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__
from .core.errors import RegistryClosedError
from .core.observe import HistogramSnapshot
from .registry import AsyncRegistry
from .sync import Registry

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .registry import Member

__all__ = [
    "COUNTERS",
    "GAUGES",
    "GENERIC_HELP",
    "HISTOGRAMS",
    "MetricsServer",
    "MetricsSource",
    "RegistryCollector",
    "counter_name",
    "register_collector",
    "serve_metrics",
]

#: What every known counter statistic counts (the help text of ``gossipreg_<name>_total``).
COUNTERS: Mapping[str, str] = {
    # traffic
    "datagrams_sent": "Datagrams this member sent (gossip, probes, acks, tree forwards).",
    "datagrams_received": "Datagrams received, before authentication.",
    "bytes_sent": "Bytes of datagrams sent, sealing overhead included.",
    "bytes_received": "Bytes of datagrams received, before authentication.",
    "stream_messages_sent": "Stream (push-pull) messages sent.",
    "stream_messages_received": "Stream (push-pull) messages received.",
    "stream_bytes_sent": "Bytes of stream (push-pull) chunks sent, sealing overhead included.",
    "stream_bytes_received": "Bytes of stream (push-pull) chunks received.",
    # rejected input
    "auth_failures": "Datagrams and stream chunks refused: wrong key or cluster label, or tampered.",
    "plaintext_rejected": "Plaintext datagrams refused by this member, which requires sealed traffic.",
    "sealed_received_while_insecure": "Sealed datagrams received by this insecure (plaintext) member.",
    "decode_errors": "Datagrams, messages or stream messages that failed to decode (malformed or unknown).",
    "stale_skipped": "Updates skipped before decoding because this member already had them.",
    "pings_misdirected": "Pings received for another member's name (an address reused by another member).",
    "records_rejected_drift": "Records refused because their owner's clock stamp was too far ahead.",
    "stream_messages_too_large": "Stream messages refused for exceeding Config.max_stream_frame.",
    "stream_refusals_sent": "Refusals written on inbound streams whose first frame was not accepted "
    "(another key or label, plaintext against sealed).",
    "stream_refusals_received": "Refusals received on streams this member opened: the peer did not accept "
    "its first frame.",
    "identity_unsigned": "Records, alives or member states refused for lacking their signer's signature.",
    "identity_unknown_signer": "Signed statements whose signer's certificate was not known here yet.",
    "identity_certificates_asked": "Certificates of unknown signers asked of the member that sent them.",
    "identity_certificates_sent": "Certificates sent in answer to such requests.",
    "identity_pending_dropped": "Statements dropped waiting for their signer's certificate (bound full).",
    "identity_bad_signature": "Statements refused because their signature did not verify.",
    "identity_bad_certificate": "Certificates refused: not of the cluster CA, expired, or for another name.",
    "incarnation_overflows": "Accusations this member could not refute: incarnation at its maximum.",
    # probing
    "probes_sent": "Probes (SWIM pings) this member started.",
    "probes_acked": "Probes answered by an ack, directly or through ping-req helpers.",
    "probes_failed": "Probes with no ack by the end of the protocol period (the target becomes suspect).",
    "probe_resends": "Pings sent again within a probe because the ack was overdue (Config.probe_resends).",
    "pings_received": "Pings received.",
    "ping_reqs_sent": "Indirect probe requests (ping-req) sent to helpers after a probe timed out.",
    "ping_reqs_received": "Indirect probe requests (ping-req) received, to ping a member for another.",
    "nacks_sent": "Nacks sent to a ping-req requester: the target did not answer in time.",
    "nacks_received": "Nacks received from ping-req helpers.",
    # dissemination
    "eager_pushes": "Eager push rounds: fresh news sent at once to gossip_nodes members.",
    "eager_rounds_deferred": "Eager rounds left to the next gossip round because eager_round_rate was spent.",
    "gossip_datagrams": "Periodic gossip rounds sent (every gossip_interval).",
    "tree_datagrams": "Datagrams sent down a broadcast tree (originated or forwarded).",
    "tree_acks_received": "Acks of this member's broadcast-tree datagrams received from its children.",
    "tree_resends": "Broadcast-tree datagrams sent again because their ack was overdue (the tree repair).",
    "tree_unacked": "Broadcast-tree datagrams given up on: no ack after every re-send, the child gone, "
    "or too many awaiting.",
    "tree_duplicates": "Repeated broadcast-tree datagrams received (acked again, not passed on).",
    "records_too_large_for_gossip": "Records too large for one datagram: left to push-pull.",
    # anti-entropy
    "push_pulls_started": "Push-pull (anti-entropy) exchanges this member started, joins included.",
    "push_pulls_answered": "Push-pull exchanges other members started with this one.",
    "push_pulls_completed": "Push-pull exchanges completed, either side.",
    "push_pulls_failed": "Push-pull exchanges abandoned: connection failed or lost, timed out, bad input.",
    "push_pull_checks": "Periodic anti-entropy exchanges begun with a summary check.",
    "push_pull_checks_matched": "Summary checks that found both sides equal (nothing to exchange).",
    "reconnect_attempts": "Anti-entropy checks sent to a member held dead (reconnect).",
    "reconnect_pings": "Pings sent to a member held dead, to notice a healed partition.",
    "remerges_started": "Push-pulls begun at once because a member held dead spoke.",
    "owner_resyncs": "Push-pulls with a member back from down (its records hidden until one completes).",
    "owner_resyncs_abandoned": "Such records shown without a completed push-pull, after 3 * stream_timeout.",
    # broadcast queue
    "broadcast_dropped": "Broadcasts dropped from the full transmit queue (broadcast_queue_limit).",
    "broadcast_invalidated": "Queued broadcasts replaced by a newer update about the same subject.",
    # membership (SWIM / Lifeguard)
    "members_joins": "Members that joined, as this member saw them.",
    "members_suspicions": "Members suspected (alive to suspect).",
    "members_confirmations": "Independent confirmations of suspicions counted (Lifeguard).",
    "members_suspicions_refuted": "Suspicions refuted (suspect back to alive).",
    "members_suspicion_timeouts": "Suspicions that ran out here: this member declared the death.",
    "members_deaths": "Members declared dead, by whichever member.",
    "members_deaths_refuted": "Members back from dead: a false death refuted, or a restart.",
    "members_deaths_deferred": "Deaths declared elsewhere taken as a suspicion with a grace to refute.",
    "members_leaves": "Members that left gracefully.",
    "members_reaped": "Dead or left members removed from the member table.",
    "members_refutations": "Accusations about this member that it refuted.",
    "members_reassertions": "This member's alive announced again: an accuser had missed its refutation.",
    "members_conflicts": "Alive messages claiming a known member's name from another address.",
    "members_stale": "Membership messages ignored as old or as no news.",
    "members_accusations_out_of_range": "Accusations ignored: incarnation more than one past the known one.",
    "members_incarnation_overflows": "Accusations this member could not refute: incarnation at its maximum.",
    # catalog
    "catalog_merged": "Registration records (or tombstones) new to this member, merged into its catalog.",
    "catalog_duplicates": "Records received that this member already held, unchanged.",
    "catalog_stale": "Records received that were older than the version held.",
    "catalog_rejected_drift": "Records refused because their clock stamp was too far ahead.",
    "catalog_expired": "This member's own registrations whose lease (ttl) ran out.",
    "catalog_collected": "Tombstones and expired records removed after tombstone_ttl.",
    "catalog_corrections": "Corrections of records claiming this member as owner that it does not hold.",
    "catalog_conflicts": "Registrations of the same (service, version, node) by two members.",
    "catalog_over_owner_limit": "Records refused because their owner exceeded max_records_per_owner.",
    "catalog_previous_process": "Records refused because a previous process of their owner wrote them.",
    "catalog_renewals": "Registrations renewed in place (keep-alive with nothing changed).",
    # the trio driver
    "driver_datagrams_dropped_queue_full": "Datagrams dropped because the send queue was full.",
    "driver_stream_messages_dropped": "Stream messages dropped: the stream's queue was full or closed.",
    "driver_receive_errors": "Errors of the UDP socket while receiving.",
    "driver_send_errors": "Datagrams the UDP socket failed to send.",
    "driver_handler_errors": "Exceptions while handling a datagram, stream message or timer (logged).",
    "driver_stream_connect_failures": "Streams to other members that could not be opened in time.",
    "driver_stream_handshake_failures": "Inbound streams whose TLS handshake failed.",
    "driver_stream_errors": "Streams that failed while reading or writing a frame.",
    "driver_streams_refused_limit": "Inbound streams refused: every slot held an authenticated stream.",
    "driver_streams_refused_source": "Inbound streams refused: their source is at its unauthenticated quota.",
    "driver_streams_evicted": "Unauthenticated inbound streams closed to make room for new ones.",
    "driver_streams_auth_timeouts": "Inbound streams closed for sending no authenticated frame in time.",
}

#: Statistics that are current values: ``statistic -> (metric name, help)``.
GAUGES: Mapping[str, tuple[str, str]] = {
    "members_incarnation": (
        "gossipreg_incarnation", "This member's incarnation number (rises at refutations)."
    ),
    "members_awareness": (
        "gossipreg_awareness",
        "Lifeguard local-health score: 0 is healthy; higher means missed acks and slower probing.",
    ),
    "broadcast_queue": ("gossipreg_broadcast_queue", "Broadcasts queued for retransmission now."),
}

#: Member states, each a ``state`` label value of ``gossipreg_members``.
_STATES = ("alive", "suspect", "dead", "left")

#: The core's histograms: ``name -> (metric name, help)``.
HISTOGRAMS: Mapping[str, tuple[str, str]] = {
    "probe_rtt": (
        "gossipreg_probe_rtt_seconds",
        "Seconds from a probe's ping to its ack, for acked probes (through ping-req helpers too).",
    ),
    "push_pull": (
        "gossipreg_push_pull_duration_seconds",
        "Seconds from INIT to FETCH of completed push-pull exchanges this member started.",
    ),
    "spread": (
        "gossipreg_spread_seconds",
        "Seconds from a registration change's stamp by its owner to its first merge here "
        "(wall clocks: skew between members adds or subtracts).",
    ),
}

#: Help text of a statistic this version does not describe (``{key}`` is its name).
GENERIC_HELP = "gossipreg statistic {key!r}: not described by this version of gossipreg.metrics."


def counter_name(key: str) -> str:
    """The metric name (without ``_total``) of the counter statistic ``key``.

    ``gossipreg_`` plus the key, with a ``bytes`` word moved to the end (Prometheus
    puts the unit last): ``bytes_sent`` -> ``gossipreg_sent_bytes``,
    ``stream_bytes_received`` -> ``gossipreg_stream_received_bytes``. Characters
    not allowed in a metric name become ``_``.
    """
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in key)
    words = cleaned.split("_")
    if "bytes" in words:
        words = [w for w in words if w != "bytes"] + ["bytes"]
    return "gossipreg_" + "_".join(words)


class MetricsSource(Protocol):
    """What :class:`RegistryCollector` reads: every gossipreg registry has it."""

    @property
    def name(self) -> str:
        """The member's name."""
        ...

    def statistics(self) -> dict[str, int]:
        """The member's counters (see :meth:`gossipreg.AsyncRegistry.statistics`)."""
        ...

    def members(self) -> Sequence[Member]:
        """The members it knows (read only if the statistics lack ``members_<state>``)."""
        ...


@dataclass(frozen=True, slots=True)
class _Reading:
    name: str
    statistics: dict[str, int]
    histograms: Mapping[str, HistogramSnapshot]


def _histograms(registry: object) -> Mapping[str, HistogramSnapshot]:
    """The member's latency histograms, if this front end can give them (else none).

    A ``histograms()`` method is used when the front end has one (the asyncio
    registry's snapshot is ``_histograms()``); otherwise the node core of an
    AsyncRegistry (``_core``) or of a test kit registry (``core``).
    """
    method = getattr(registry, "histograms", None) or getattr(registry, "_histograms", None)
    if callable(method):
        found = method()
        return found if isinstance(found, Mapping) else {}
    for attr in ("_core", "core"):
        core = getattr(registry, attr, None)
        if core is not None and callable(getattr(core, "histograms", None)):
            result = core.histograms()
            return result if isinstance(result, Mapping) else {}
    return {}


def _read(registry: MetricsSource) -> _Reading:
    stats = registry.statistics()
    if not any(f"members_{s}" in stats for s in _STATES):
        counts = dict.fromkeys(_STATES, 0)
        for m in registry.members():
            counts[m.state] = counts.get(m.state, 0) + 1
        stats.update({f"members_{s}": n for s, n in counts.items()})
    return _Reading(registry.name, stats, _histograms(registry))


def _reader(registry: MetricsSource) -> Callable[[], _Reading]:
    if isinstance(registry, Registry):
        # The sync facade: one hop to its member's trio thread for the whole reading.
        return lambda: registry._sync(_read)
    return lambda: _read(registry)


class RegistryCollector(Collector):
    """A ``prometheus_client`` collector of one member's metrics (see the module docstring).

    Args:
        registry: the member: a :class:`gossipreg.AsyncRegistry` (create the
            collector inside its trio run: a scrape from another thread then
            reads it on the trio thread), a :class:`gossipreg.Registry` (any
            thread but a trio one), a :class:`gossipreg.aio.AsyncioRegistry`, a
            test kit registry, or any object with ``name``, ``statistics()`` and
            ``members()``.

    A closed registry yields no metrics. Register the collector of one member
    per ``CollectorRegistry``: two members' metrics share names.
    """

    def __init__(self, registry: MetricsSource) -> None:
        self.registry = registry
        self._read = _reader(registry)
        self._token: trio.lowlevel.TrioToken | None = None
        if isinstance(registry, AsyncRegistry):
            try:
                self._token = trio.lowlevel.current_trio_token()
            except RuntimeError:
                self._token = None  # not in trio: the caller collects on the member's thread
        self._thread = threading.get_ident()

    def _reading(self) -> _Reading:
        if self._token is not None and threading.get_ident() != self._thread:
            return trio.from_thread.run_sync(self._read, trio_token=self._token)
        return self._read()

    def describe(self) -> Iterator[Metric]:
        """The families this collector yields (without samples), so that a
        ``CollectorRegistry`` knows their names without collecting: it then refuses a
        second member's collector (same names), and ``restricted_registry`` finds them.
        Statistics this version does not know are not described."""
        yield InfoMetricFamily("gossipreg", "")
        yield GaugeMetricFamily("gossipreg_members", "", labels=["state"])
        for name, _ in GAUGES.values():
            yield GaugeMetricFamily(name, "")
        for key in COUNTERS:
            yield CounterMetricFamily(counter_name(key), "", labels=[])
        for name, _ in HISTOGRAMS.values():
            yield HistogramMetricFamily(name, "", labels=[])

    def collect(self) -> Iterator[Metric]:
        """The member's metric families now (none once the registry is closed)."""
        try:
            reading = self._reading()
        except (RegistryClosedError, trio.RunFinishedError):
            return
        yield from _families(reading.name, reading.statistics, reading.histograms)


def _families(
    member: str, statistics: Mapping[str, int], histograms: Mapping[str, HistogramSnapshot]
) -> Iterator[Metric]:
    """The metric families of a member named ``member`` with these statistics and histograms."""
    info = InfoMetricFamily("gossipreg", "The member this process runs; always 1.")
    info.add_metric([], {"member": member, "version": __version__})
    yield info
    states = [(s, statistics[f"members_{s}"]) for s in _STATES if f"members_{s}" in statistics]
    if states:
        by_state = GaugeMetricFamily(
            "gossipreg_members", "Members this member knows, by state (itself included).", labels=["state"]
        )
        for state, n in states:
            by_state.add_metric([state], n)
        yield by_state
    for key, (name, text) in GAUGES.items():
        if key in statistics:
            yield GaugeMetricFamily(name, text, value=statistics[key])
    skip = {f"members_{s}" for s in _STATES} | set(GAUGES)
    for key in sorted(statistics):
        if key in skip:
            continue
        text = COUNTERS.get(key) or GENERIC_HELP.format(key=key)
        yield CounterMetricFamily(counter_name(key), text, value=statistics[key])
    for key, snap in histograms.items():
        name, text = HISTOGRAMS.get(key, (f"gossipreg_{key}_seconds", GENERIC_HELP.format(key=key)))
        buckets = [(_go_float(bound), float(n)) for bound, n in snap.cumulative()]
        yield HistogramMetricFamily(name, text, buckets=buckets, sum_value=snap.sum)


def _go_float(bound: float) -> str:
    """A bucket bound as Prometheus writes ``le`` (``+Inf``, ``0.5``, ``1.0``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def register_collector(
    registry: MetricsSource, collector_registry: CollectorRegistry | None = None
) -> RegistryCollector:
    """Add a :class:`RegistryCollector` of ``registry`` to ``collector_registry``.

    Args:
        registry: the member (see :class:`RegistryCollector` for which thread).
        collector_registry: where to add it; default ``prometheus_client.REGISTRY``,
            the registry ``prometheus_client.start_http_server()`` and most
            framework integrations serve.

    Returns:
        The collector; ``collector_registry.unregister(collector)`` removes it
        (do, before the member closes, if the process keeps serving metrics).

    Raises:
        ValueError: ``collector_registry`` already holds a member's metrics.
    """
    target = prometheus_client.REGISTRY if collector_registry is None else collector_registry
    collector = RegistryCollector(registry)
    target.register(collector)
    return collector


@dataclass
class MetricsServer:
    """The HTTP server of :func:`serve_metrics`, serving from a daemon thread."""

    server: WSGIServer
    """The ``wsgiref`` server (``prometheus_client.start_http_server``'s)."""
    thread: threading.Thread
    """The thread serving it."""
    collector_registry: CollectorRegistry
    """What it serves."""
    collector: RegistryCollector
    """The member's collector in it."""

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when asked for port 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and close the socket (blocks up to half a second). Idempotent."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()

    async def aclose(self) -> None:
        """:meth:`close` from a trio program, in a worker thread (the loop keeps running)."""
        await trio.to_thread.run_sync(self.close)

    def __enter__(self) -> MetricsServer:
        """The server itself; it closes at the end of the ``with`` block."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the server."""
        self.close()


def serve_metrics(
    registry: MetricsSource,
    port: int,
    addr: str = "0.0.0.0",
    *,
    collector_registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve ``registry``'s metrics over HTTP on ``addr:port``, from a daemon thread.

    Every path answers with the Prometheus text format (``/metrics`` by
    convention). Returns at once, the socket bound.

    Args:
        registry: the member. A trio program calls this inside the member's trio
            run (scrapes then read the member on the trio thread) and closes the
            server with :meth:`MetricsServer.aclose`; a sync program passes its
            :class:`gossipreg.Registry`; an asyncio program its
            :class:`~gossipreg.aio.AsyncioRegistry`.
        port: TCP port; 0 picks a free one (:attr:`MetricsServer.port`).
        addr: address to bind; ``"0.0.0.0"`` (every IPv4 interface, as
            ``prometheus_client`` does) lets a Prometheus server on another host
            scrape; ``"127.0.0.1"`` keeps it local.
        collector_registry: serve this ``CollectorRegistry``, with the member's
            collector added to it. Default: a new one holding the member's
            collector and the process's own metrics (``process_*`` where
            ``/proc`` exists, ``python_info``, ``python_gc_*``).

    Returns:
        The running server; close it before or when the member closes.

    Raises:
        OSError: the address cannot be bound.
        ValueError: ``collector_registry`` already holds a member's metrics.
    """
    target = collector_registry
    if target is None:
        target = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=target)
        prometheus_client.PlatformCollector(registry=target)
        prometheus_client.GCCollector(registry=target)
    collector = register_collector(registry, target)
    try:
        server, thread = prometheus_client.start_http_server(port, addr, registry=target)
    except BaseException:
        target.unregister(collector)
        raise
    return MetricsServer(server, thread, target, collector)
