"""Who may join: keyring, plaintext and mutual TLS on real 127.0.0.1 sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gossipreg.core.errors import JoinError
from gossipreg.pki import create_ca, create_member_cert
from gossipreg.registry import AsyncRegistry, open_registry
from gossipreg.tls import TLSFiles

from .helpers import FAST, KEY, OTHER_KEY, alive, cluster, seed_of, service, visible, wait_until

#: Seconds a refused member keeps trying its seed before JoinError.
JOIN_TIMEOUT = 1.5


def join_refused() -> pytest.RaisesExc[JoinError]:
    """A bare JoinError: open_registry unwraps its nursery's exception group (since 79bc80a)."""
    return pytest.RaisesExc(JoinError, match="^could not join")


def total(regs: list[AsyncRegistry], counter: str) -> int:
    return sum(r.statistics().get(counter, 0) for r in regs)


class Pki:
    """A cluster CA in a directory, issuing member certificates as TLSFiles."""

    def __init__(self, root: Path, label: str) -> None:
        self.root = root / label
        self.root.mkdir()
        self.ca_cert, self.ca_key = create_ca(f"{label} CA", days=2)
        self.ca_path = self.root / "ca.crt"
        self.ca_path.write_bytes(self.ca_cert)

    def member(self, name: str, *, trust: Path | None = None) -> TLSFiles:
        cert, key = create_member_cert(self.ca_cert, self.ca_key, name, ips=["127.0.0.1"], days=1)
        (self.root / f"{name}.crt").write_bytes(cert)
        (self.root / f"{name}.key").write_bytes(key)
        return TLSFiles(trust or self.ca_path, self.root / f"{name}.crt", self.root / f"{name}.key")


async def test_member_with_a_wrong_key_cannot_join() -> None:
    with trio.fail_after(30):
        async with cluster(3) as regs:
            with join_refused():
                async with open_registry(
                    seeds=[seed_of(regs[0])], keyring=OTHER_KEY, name="intruder", config=FAST,
                    timeout=JOIN_TIMEOUT,
                ):
                    raise AssertionError("joined with a wrong key")
            assert regs[0].statistics()["auth_failures"] > 0
            assert total(regs, "plaintext_rejected") == 0
            assert all("intruder" not in {m.name for m in r.members()} for r in regs)


async def test_plaintext_member_cannot_join_a_sealed_cluster() -> None:
    with trio.fail_after(30):
        async with cluster(3) as regs:
            with join_refused():
                async with open_registry(
                    seeds=[seed_of(regs[0])], insecure=True, name="plain", config=FAST, timeout=JOIN_TIMEOUT
                ):
                    raise AssertionError("a plaintext member joined a sealed cluster")
            assert regs[0].statistics()["plaintext_rejected"] > 0
            assert total(regs, "auth_failures") == 0
            assert all("plain" not in {m.name for m in r.members()} for r in regs)


async def test_errors_in_the_callers_block_are_not_wrapped_in_an_exception_group() -> None:
    """Regression (fixed in 79bc80a): open_registry yields inside a nursery, whose strict exception
    groups once wrapped JoinError and the caller's own exceptions."""

    class Oops(Exception):
        pass

    with trio.fail_after(30):
        async with cluster(1) as regs:
            with pytest.raises(Oops):
                async with open_registry(seeds=[seed_of(regs[0])], keyring=KEY, config=FAST, timeout=5):
                    raise Oops
            # ... and the member still left gracefully on the way out.
            await wait_until(lambda: alive(regs[0]) == {regs[0].name}, "the member to leave")
            assert "left" in {m.state for m in regs[0].members()}


async def test_members_with_certificates_of_the_cluster_ca_join_over_tls(tmp_path: Path) -> None:
    pki = Pki(tmp_path, "cluster")
    files = [pki.member(f"t{i}") for i in range(4)]
    with trio.fail_after(30):
        async with cluster(4, prefix="t", per_member=lambda i: {"tls": files[i]}) as regs:
            svc = service("secure", "s1")
            await regs[3].register(svc)
            await wait_until(lambda: all(visible(r, svc) for r in regs), "the service everywhere")
            assert total(regs, "push_pulls_completed") >= 3  # the joins ran over TLS streams
            assert total(regs, "driver_stream_handshake_failures") == 0
            assert total(regs, "auth_failures") == 0


@pytest.mark.parametrize("trusts", ["its own CA", "the cluster CA"])
async def test_member_with_a_certificate_of_another_ca_cannot_join(tmp_path: Path, trusts: str) -> None:
    pki = Pki(tmp_path, "cluster")
    rogue = Pki(tmp_path, "rogue")
    files = [pki.member(f"t{i}") for i in range(3)]
    intruder = rogue.member("intruder", trust=pki.ca_path if trusts == "the cluster CA" else None)
    with trio.fail_after(30):
        async with cluster(3, prefix="t", per_member=lambda i: {"tls": files[i]}) as regs:
            with join_refused():
                async with open_registry(
                    seeds=[seed_of(regs[0])], keyring=KEY, tls=intruder, name="intruder", config=FAST,
                    timeout=JOIN_TIMEOUT,
                ):
                    raise AssertionError("joined with a certificate of another CA")
            assert regs[0].statistics().get("driver_stream_handshake_failures", 0) > 0
            assert all(alive(r) == {"t0", "t1", "t2"} for r in regs)


async def test_member_without_tls_cannot_join_a_tls_cluster(tmp_path: Path) -> None:
    pki = Pki(tmp_path, "cluster")
    files = [pki.member(f"t{i}") for i in range(2)]
    with trio.fail_after(30):
        async with cluster(2, prefix="t", per_member=lambda i: {"tls": files[i]}) as regs:
            with join_refused():
                async with open_registry(
                    seeds=[seed_of(regs[0])], keyring=KEY, name="plain-tcp", config=FAST, timeout=JOIN_TIMEOUT
                ):
                    raise AssertionError("joined without TLS")
            assert regs[0].statistics().get("driver_stream_handshake_failures", 0) > 0
