#!/usr/bin/env python3
"""Benchmark member identities (``gossipreg/core/identity.py``): CPU and bytes.

Prints one JSON object (and writes it to ``--out`` if given). Every rate is
single-threaded (one core), the median of ``--runs`` runs of ``--iterations``
operations each:

* ``sign_per_s`` / ``verify_per_s``: :meth:`Identity.sign` and
  :meth:`TrustStore.verify` of a record's canonical encoding (the msgpack
  array of :func:`gossipreg.core.codec.encode_record`), ECDSA P-256 with
  SHA-256; ``verify_bad_signature_per_s`` for a wrong signature (what a
  forger costs); ``sign_us`` / ``verify_us`` are the same as microseconds
  per operation.
* ``admit_new_per_s``: certificates admitted for the first time (DER parse,
  CA signature check, every rule); ``admit_cached_per_s``: admissions of a
  certificate already held (fingerprint and validity only).
* ``decode_record_us``: the codec's strict decoding of the same record, for
  scale: what receiving a record costs today before it is merged.
* Bytes: ``signature_bytes`` (raw ``r || s``), ``signature_wire_bytes`` (as a
  msgpack ``bin``), ``certificate_der_bytes`` (a member certificate of
  ``gossipreg.pki`` with one IP address) and without alternative names,
  ``record_bytes`` for a realistic go-micro record and a minimal one,
  ``per_record_overhead_bytes`` and its share, ``per_alive_overhead_bytes``
  (signature plus an 8-byte certificate fingerprint) and the records that
  fit in one default datagram with and without signatures.
* ``trust_store_bytes_per_entry``: resident memory per admitted certificate
  (RSS growth over ``--entries`` admissions; Linux only), and that times
  ``DEFAULT_MAX_ENTRIES``, the store's worst case.

Usage: ``python scripts/bench_identity.py [--iterations N] [--runs R] [--entries K] [--out FILE]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cryptography

from gossipreg.core.catalog import Record
from gossipreg.core.codec import (
    DATAGRAM_OVERHEAD,
    RecordMsg,
    decode_record,
    encode_message,
    encode_record,
    pack,
    unpack,
)
from gossipreg.core.config import Config
from gossipreg.core.crypto import OVERHEAD as SEAL_OVERHEAD
from gossipreg.core.hlc import make_stamp
from gossipreg.core.identity import (
    DEFAULT_MAX_ENTRIES,
    RECORD_DOMAIN,
    SIGNATURE_SIZE,
    Identity,
    TrustStore,
)
from gossipreg.core.membership import Address, Alive
from gossipreg.core.model import Endpoint, Node, Value
from gossipreg.pki import create_ca, create_member_cert

BASE_MS = 1_800_000_000_000


def realistic_record() -> Record:
    """A go-micro server's registration, as in ``scripts/bench_core.py``."""
    nid = "go.micro.srv.svc0042-6f1c2a9e-3b7d-4c55-9a1e-2d8f0b4c7e31"
    endpoints = (
        Endpoint(
            "Handler.Call",
            Value("Request", "Request", (Value("name", "string"),)),
            Value("Response", "Response", (Value("msg", "string"),)),
            {"stream": "false"},
        ),
        Endpoint(
            "Handler.Stream", Value("Request", "Request"), Value("Response", "Response"), {"stream": "true"}
        ),
    )
    node = Node(
        nid,
        "10.1.2.3:43127",
        None,
        {"broker": "http", "protocol": "grpc", "registry": "gossip", "server": "grpc", "transport": "grpc"},
    )
    return Record("go.micro.srv.svc0042", "1.0.0", nid, "member-0042", make_stamp(BASE_MS), 90.0, False, node,
                  {"team": "payments"}, endpoints)


def minimal_record() -> Record:
    nid = "6f1c2a9e-3b7d-4c55-9a1e-2d8f0b4c7e31"
    return Record("greeter", "1.0.0", nid, "member-0042", make_stamp(BASE_MS), None, False,
                  Node(nid, "10.1.2.3:8080"))


def rate(op: Callable[[], object], iterations: int, runs: int) -> float:
    """Median operations per second over ``runs`` runs of ``iterations`` calls."""
    op()  # warm up
    results = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(iterations):
            op()
        results.append(iterations / (time.perf_counter() - t0))
    return statistics.median(results)


def rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="operations per run")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is reported")
    parser.add_argument(
        "--entries", type=int, default=2000, help="certificates admitted for the memory figure"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    n, runs = args.iterations, args.runs
    now = datetime.datetime.now(datetime.UTC).timestamp()

    ca_cert, ca_key = create_ca("bench CA")
    ident = Identity(*create_member_cert(ca_cert, ca_key, "member-0042", ips=["10.1.2.3"]))
    bare = Identity(*create_member_cert(ca_cert, ca_key, "member-0043"))
    store = TrustStore(ca_cert)
    store.admit_own(ident, now)

    record = realistic_record()
    payload = pack(encode_record(record))
    sig = ident.sign(RECORD_DOMAIN, payload)
    bad = sig[:SIGNATURE_SIZE // 2] + bytes(reversed(sig[SIGNATURE_SIZE // 2:]))
    assert store.verify("member-0042", RECORD_DOMAIN, payload, sig)
    assert not store.verify("member-0042", RECORD_DOMAIN, payload, bad)

    result: dict[str, object] = {
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "iterations": n,
        "runs": runs,
        "threads": 1,
    }
    sign_rate = rate(lambda: ident.sign(RECORD_DOMAIN, payload), n, runs)
    verify_rate = rate(lambda: store.verify("member-0042", RECORD_DOMAIN, payload, sig), n, runs)
    bad_rate = rate(lambda: store.verify("member-0042", RECORD_DOMAIN, payload, bad), n, runs)
    raw = unpack(payload)
    decode_rate = rate(lambda: decode_record(raw), n, runs)
    result.update(
        sign_per_s=round(sign_rate),
        verify_per_s=round(verify_rate),
        verify_bad_signature_per_s=round(bad_rate),
        sign_us=round(1e6 / sign_rate, 1),
        verify_us=round(1e6 / verify_rate, 1),
        decode_record_us=round(1e6 / decode_rate, 1),
    )

    # Admission: distinct certificates, each admitted once into a fresh store.
    certs = [
        Identity(*create_member_cert(ca_cert, ca_key, f"m-{i}")) for i in range(min(n, 500))
    ]
    new_rates = []
    for _ in range(runs):
        fresh = TrustStore(ca_cert)
        t0 = time.perf_counter()
        for c in certs:
            fresh.admit(c.name, c.certificate_der, now)
        new_rates.append(len(certs) / (time.perf_counter() - t0))
    result["admit_new_per_s"] = round(statistics.median(new_rates))
    result["admit_cached_per_s"] = round(
        rate(lambda: store.admit("member-0042", ident.certificate_der, now), n, runs)
    )

    # Bytes.
    sig_wire = len(pack(sig))
    fp_wire = len(pack(ident.short_fingerprint))
    alive = Alive("member-0042", 7, Address("10.1.2.3", 7946), b"", make_stamp(BASE_MS))
    alive_bytes = len(encode_message(alive))
    mtu = Config().max_packet_size - SEAL_OVERHEAD - DATAGRAM_OVERHEAD
    result.update(
        signature_bytes=SIGNATURE_SIZE,
        signature_wire_bytes=sig_wire,
        certificate_der_bytes=len(ident.certificate_der),
        certificate_der_bytes_no_sans=len(bare.certificate_der),
        certificate_fingerprint_wire_bytes=fp_wire,
        per_record_overhead_bytes=sig_wire,
        per_alive_overhead_bytes=sig_wire + fp_wire,
        alive_bytes=alive_bytes,
    )
    for label, rec in (("realistic", record), ("minimal", minimal_record())):
        size = len(encode_message(RecordMsg(rec)))
        result[f"record_bytes_{label}"] = size
        result[f"per_record_overhead_share_{label}"] = round(sig_wire / size, 3)
        result[f"records_per_datagram_{label}"] = mtu // size
        result[f"records_per_datagram_{label}_signed"] = mtu // (size + sig_wire)

    # Memory of the trust store.
    k = args.entries
    many = [create_member_cert(ca_cert, ca_key, f"e-{i}") for i in range(k)]
    ders = [(f"e-{i}", Identity(*pair).certificate_der) for i, pair in enumerate(many)]
    del many
    big = TrustStore(ca_cert)
    before = rss_bytes()
    for name, der in ders:
        big.admit(name, der, now)
    after = rss_bytes()
    if before is not None and after is not None:
        per_entry = (after - before) / k
        result["trust_store_entries_measured"] = k
        result["trust_store_bytes_per_entry"] = round(per_entry)
        result["trust_store_max_entries"] = DEFAULT_MAX_ENTRIES
        result["trust_store_worst_case_mib"] = round(per_entry * DEFAULT_MAX_ENTRIES / 2**20, 1)

    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
