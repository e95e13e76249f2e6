"""Member identities on real sockets: members signing with certificates of one CA.

A key holder without a member certificate (it has the cluster key, as after
a key leak) sends forged tombstones and overrides of another member's
registration straight to a member; nothing it sends changes that member's
view, and the cluster still spreads new registrations.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from gossipreg import pki
from gossipreg.core import codec
from gossipreg.core.catalog import Record
from gossipreg.core.codec import RecordMsg
from gossipreg.core.crypto import Keyring
from gossipreg.core.errors import ConfigError
from gossipreg.core.model import Node
from gossipreg.registry import open_registry
from gossipreg.tls import TLSFiles

from .helpers import FAST, KEY, cluster, service, visible, wait_until


def _files(tmp: Path, names: list[str]) -> dict[str, TLSFiles]:
    ca, ca_key = pki.create_ca("integration CA")
    (tmp / "ca.crt").write_bytes(ca)
    out = {}
    for n in names:
        cert, key = pki.create_member_cert(ca, ca_key, n)
        (tmp / f"{n}.crt").write_bytes(cert)
        (tmp / f"{n}.key").write_bytes(key)
        out[n] = TLSFiles(tmp / "ca.crt", tmp / f"{n}.crt", tmp / f"{n}.key")
    return out


async def test_a_key_holder_cannot_hide_or_move_a_signed_registration(tmp_path: Path) -> None:
    files = _files(tmp_path, ["m0", "m1", "m2"])
    async with cluster(3, per_member=lambda i: {"identity": files[f"m{i}"]}) as (m0, m1, m2):
        svc = service("web", "w1")
        await m1.register(svc)
        await wait_until(lambda: visible(m2, svc), "the registration at m2")
        [rec] = [r for r in m2._core.catalog.records() if r.key == ("web", "1.0.0", "w1")]
        forged = [
            Record(rec.service, rec.version, rec.node_id, "m1", rec.stamp + (1 << 16), None, True),
            Record(rec.service, rec.version, rec.node_id, "m1", rec.stamp + (1 << 16), None, False,
                   Node("w1", "10.66.66.66:80")),
        ]
        ring = Keyring(KEY)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for _ in range(10):
                for f in forged:
                    datagram = ring.seal(codec.pack_datagram([codec.encode_message(RecordMsg(f))]), b"")
                    sock.sendto(datagram, m2.address)
                await trio.sleep(0.05)
                assert visible(m2, svc), "a forgery hid the registration"
        stats = m2.statistics()
        assert stats["identity_unsigned"] >= 20
        [shown] = m2.get_service("web")
        assert [n.address for n in shown.nodes] == [n.address for n in svc.nodes]
        # The cluster still spreads a new registration, signed by its owner.
        late = service("late", "l1")
        await m0.register(late)
        await wait_until(lambda: visible(m1, late) and visible(m2, late), "a new registration")


async def test_the_name_defaults_to_the_certificates_and_must_match_it(tmp_path: Path) -> None:
    files = _files(tmp_path, ["alpha"])
    async with open_registry("127.0.0.1:0", keyring=KEY, config=FAST, identity=files["alpha"]) as reg:
        assert reg.name == "alpha"
    with pytest.raises(ConfigError, match="alpha"):
        async with open_registry("127.0.0.1:0", keyring=KEY, config=FAST, identity=files["alpha"],
                                 name="beta"):
            pass


async def test_unreadable_identity_files_are_a_config_error(tmp_path: Path) -> None:
    missing = TLSFiles(tmp_path / "ca.crt", tmp_path / "m.crt", tmp_path / "m.key")
    with pytest.raises(ConfigError, match=r"^identity\.ca: cannot read"):
        async with open_registry("127.0.0.1:0", keyring=KEY, config=FAST, identity=missing):
            pass
