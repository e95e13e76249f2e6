"""Seeds from DNS SRV records, on real 127.0.0.1 sockets with a DNS server of the test's own.

The server answers SRV queries from a table the test changes, so a member
whose only seed is ``srv:NAME`` finds the members the table names, and
looks them up again on every try.
"""

from __future__ import annotations

import socket

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rrset
import pytest
import trio

from gossipreg import ConfigError, JoinError
from gossipreg.registry import open_registry
from gossipreg.runtime import srv

from .helpers import FAST, KEY, alive, wait_until

NAME = "_gossipreg._udp.test.internal"


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering SRV queries from :attr:`records`."""

    def __init__(self) -> None:
        #: Record name (with its final dot) -> (priority, weight, port, target) of each SRV record.
        self.records: dict[str, list[tuple[int, int, int, str]]] = {}
        self.queries = 0
        self.port = 0

    async def serve(self, task_status: trio.TaskStatus[None]) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            task_status.started()
            while True:
                data, peer = await sock.recvfrom(4096)
                query = dns.message.from_wire(data)
                reply = dns.message.make_response(query)
                question = query.question[0]
                self.queries += 1
                found = self.records.get(question.name.to_text())
                if found:
                    reply.answer.append(dns.rrset.from_text_list(
                        question.name, 30, "IN", "SRV", [f"{p} {w} {port} {t}" for p, w, port, t in found]))
                else:
                    reply.set_rcode(dns.rcode.NXDOMAIN)
                await sock.sendto(reply.to_wire(), peer)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> DnsServer:
    dns_server = DnsServer()

    def resolver() -> dns.asyncresolver.Resolver:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = dns_server.port
        r.lifetime = 2.0
        return r

    monkeypatch.setattr(srv, "make_resolver", resolver)
    return dns_server


async def test_a_member_joins_the_targets_of_an_srv_seed_looked_up_again_on_every_try(
    server: DnsServer,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            # No record yet: the first tries fail, the member serves alone (retry-join).
            async with open_registry(seeds=[f"srv:{NAME}"], keyring=KEY, name="b", config=FAST,
                                     retry_join=True, timeout=1.0) as b:
                await wait_until(lambda: server.queries >= 2, "b to look the name up again")
                assert alive(b) == {"b"}
                async with open_registry(keyring=KEY, name="a", config=FAST) as a:
                    # The record appears, naming a, and a closed port at a lower priority.
                    a_port = a.address[1]
                    server.records[NAME + "."] = [(10, 5, a_port, "localhost."), (20, 5, 1, "localhost.")]
                    await wait_until(lambda: alive(b) == {"a", "b"} == alive(a), "b to find a through DNS")
                    assert b.status().state == "joined"
            nursery.cancel_scope.cancel()


async def test_an_srv_seed_that_does_not_resolve_is_named_in_the_join_error(server: DnsServer) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            unresolved = rf"\(srv:{NAME}\) within 1s: no seed address could be resolved"
            with pytest.raises(JoinError, match=unresolved):
                async with open_registry(seeds=f"srv:{NAME}", keyring=KEY, config=FAST, timeout=1.0):
                    pytest.fail("joined nobody")
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("seed", ["srv:", "srv:two words", "srv:host:7946"])
async def test_a_malformed_srv_seed_is_a_config_error(seed: str) -> None:
    with pytest.raises(ConfigError, match=r"^seeds\[0\]: .*the SRV name"):
        async with open_registry(seeds=[seed], keyring=KEY):
            pytest.fail("started")
