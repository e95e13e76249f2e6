#!/usr/bin/env python3
"""Benchmark the sans-IO catalog: reads, merges and digest-based sync.

Prints one JSON object (and writes it to ``--out`` if given):

* ``get_service_p50_us`` / ``get_service_p99_us``: one ``get_service`` call for
  a service of 10 nodes, in a catalog of 10,000 records (1,000 services x 10
  nodes), timed call by call.
* ``merge_records_per_s``: fresh remote records merged per second into an
  empty catalog (10,000 records, best of ``--repeat`` runs); and
  ``decode_and_merge_records_per_s``, the same starting from msgpack bytes
  (strict decoding and model validation included).
* ``digest_sync_bytes_ratio``: bytes a digest-based push-pull sends in both
  directions (two digests plus both deltas) when two catalogs of 10,000
  records differ in 1 % of them, over the bytes of one full-state transfer;
  both msgpack-encoded.

The records look like what go-micro servers register: a uuid node id, a
``host:port`` address, the five standard node metadata keys and two endpoints
per service; 1,000 owner members own 10 records each.

Usage: ``python scripts/bench_core.py [--out FILE] [--repeat N]``
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
import uuid
from pathlib import Path

from gossipreg.core.catalog import Catalog, Record
from gossipreg.core.codec import (
    decode_record,
    encode_digest,
    encode_hashes,
    encode_offer,
    encode_record,
    encode_transfer,
    pack,
    unpack,
)
from gossipreg.core.hlc import HybridClock, make_stamp
from gossipreg.core.model import Endpoint, Node, Value

SERVICES = 1000
NODES = 10
OWNERS = 1000
BASE_MS = 1_800_000_000_000


def strip(records: list[Record]) -> list[Record]:
    """The same records with no metadata and no endpoints: the smallest realistic shape."""
    return [
        Record(r.service, r.version, r.node_id, r.owner, r.stamp, r.ttl, r.deleted,
               Node(r.node_id, r.node.address) if r.node else None)
        for r in records
    ]


def build_records(rng: random.Random) -> list[Record]:
    """10,000 realistic records: 1,000 services x 10 nodes, 1,000 owners."""
    records = []
    counter = 0
    for i in range(SERVICES):
        name = f"go.micro.srv.svc{i:04d}"
        endpoints = (
            Endpoint(
                "Handler.Call",
                Value("Request", "Request", (Value("name", "string"),)),
                Value("Response", "Response", (Value("msg", "string"),)),
                {"stream": "false"},
            ),
            Endpoint("Handler.Stream", Value("Request", "Request"), Value("Response", "Response"),
                     {"stream": "true"}),
        )
        for j in range(NODES):
            nid = f"{name}-{uuid.UUID(int=rng.getrandbits(128))}"
            ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            node = Node(
                nid,
                f"{ip}:{rng.randrange(1024, 65535)}",
                None,
                {"broker": "http", "protocol": "grpc", "registry": "gossip", "server": "grpc",
                 "transport": "grpc"},
            )
            owner = f"member-{(i * NODES + j) % OWNERS:04d}"
            counter += 1
            records.append(
                Record(name, "1.0.0", nid, owner, make_stamp(BASE_MS + counter), 90.0, False, node,
                       {"team": "payments"}, endpoints)
            )
    return records


def catalog(name: str) -> Catalog:
    return Catalog(name, HybridClock(lambda: BASE_MS / 1000 + 3600))


def bench_get_service(records: list[Record]) -> dict[str, float]:
    cat = catalog("reader")
    cat.merge(records, now=0.0)
    name = records[len(records) // 2].service
    cat.get_service(name)  # warm the cache, as any repeated read is
    samples = []
    perf = time.perf_counter_ns
    get = cat.get_service
    for _ in range(20_000):
        t0 = perf()
        get(name)
        samples.append(perf() - t0)
    samples.sort()
    return {
        "get_service_p50_us": samples[len(samples) // 2] / 1000,
        "get_service_p99_us": samples[len(samples) * 99 // 100] / 1000,
    }


def bench_merge(records: list[Record], repeat: int) -> dict[str, float]:
    best = 0.0
    for _ in range(repeat):
        cat = catalog("merger")
        t0 = time.perf_counter()
        cat.merge(records, now=0.0)
        dt = time.perf_counter() - t0
        best = max(best, len(records) / dt)
    # The same, starting from the msgpack bytes a peer would send (decode + validate + merge).
    blob = pack([encode_record(r) for r in records])
    best_wire = 0.0
    for _ in range(repeat):
        cat = catalog("merger")
        t0 = time.perf_counter()
        cat.merge([decode_record(o) for o in unpack(blob)], now=0.0)
        dt = time.perf_counter() - t0
        best_wire = max(best_wire, len(records) / dt)
    return {"merge_records_per_s": best, "decode_and_merge_records_per_s": best_wire}


def bench_sync(records: list[Record], rng: random.Random) -> dict[str, float]:
    a, b = catalog("a"), catalog("b")
    a.merge(records, now=0.0)
    b.merge(records, now=0.0)
    # B learns a newer version of 1 % of the records that A missed.
    changed = rng.sample(records, len(records) // 100)
    newer = [
        Record(r.service, r.version, r.node_id, r.owner, r.stamp + make_stamp(10_000), r.ttl, False,
               r.node, r.metadata, r.endpoints)
        for r in changed
    ]
    b.merge(newer, now=1.0)
    now = 2.0
    full = len(pack([encode_transfer(r, age) for r, age in b.export(now)]))
    # The four-step push-pull of Catalog (A initiates), each message encoded.
    m1 = pack(encode_digest(a.digest()))
    offer = b.offer(a.digest(), now)
    m2 = pack(encode_offer(offer))
    push, want = a.reconcile(offer, now)
    m3 = pack([[encode_transfer(r, age) for r, age in push], encode_hashes(want)])
    b.merge_aged(push, now)
    fetched = b.fetch(want, now)
    m4 = pack([encode_transfer(r, age) for r, age in fetched])
    a.merge_aged(fetched, now)
    assert a.records() == b.records(), "sync did not converge"
    sent = len(m1) + len(m2) + len(m3) + len(m4)
    return {
        "digest_sync_bytes_ratio": sent / full,
        "digest_sync_bytes": sent,
        "full_state_bytes": full,
        "digest_sync_records_sent": len(offer.records) + len(push) + len(fetched),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--repeat", type=int, default=3, help="merge runs; the best is reported")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    records = build_records(random.Random(args.seed))
    result: dict[str, object] = {
        "records": len(records),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    result.update(bench_get_service(records))
    result.update(bench_merge(records, args.repeat))
    result.update(bench_sync(records, random.Random(args.seed)))
    # The ratio depends on record size; report the smallest shape too.
    minimal = bench_sync(strip(records), random.Random(args.seed))
    result["minimal_records_digest_sync_bytes_ratio"] = minimal["digest_sync_bytes_ratio"]
    result["minimal_records_full_state_bytes"] = minimal["full_state_bytes"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
