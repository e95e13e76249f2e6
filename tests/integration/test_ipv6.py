"""Two real members on the IPv6 loopback, [::1] port 0: join and share a registration."""

from __future__ import annotations

import socket

import pytest
import trio

from gossipreg.registry import open_registry
from gossipreg.runtime.transport import parse_address

from .helpers import FAST, KEY, alive, service, visible, wait_until


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback: cannot bind [::1]")


async def test_two_members_on_ipv6_loopback_join_and_share_a_registration() -> None:
    with trio.fail_after(30):
        async with open_registry("[::1]:0", name="v6-a", keyring=KEY, config=FAST, seed=1) as a:
            host, port = a.address
            assert host == "::1"
            seed = f"[{host}]:{port}"
            assert parse_address(seed) == ("::1", port)
            async with open_registry("[::1]:0", [seed], name="v6-b", keyring=KEY, config=FAST, seed=2) as b:
                assert b.address[0] == "::1"
                await wait_until(lambda: alive(a) == alive(b) == {"v6-a", "v6-b"}, "both members alive")
                svc = service("v6-svc", "n1")
                await b.register(svc)
                await wait_until(lambda: visible(a, svc), "b's registration at a")
                other = service("v6-svc", "n2")
                await a.register(other)
                await wait_until(lambda: visible(b, other), "a's registration at b")
                for reg in (a, b):
                    stats = reg.statistics()
                    assert stats["auth_failures"] == 0
                    assert stats["push_pulls_completed"] >= 1  # streams (TCP over v6) work too
                    assert stats["datagrams_received"] > 0  # and datagrams (UDP over v6)
