"""Member identities: signing, certificate admission, verification and the bounded trust store."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.errors import ConfigError
from gossipreg.core.identity import (
    ACCUSATION_DOMAIN,
    ALIVE_DOMAIN,
    DEFAULT_MAX_ENTRIES,
    FINGERPRINT_SIZE,
    LEAVE_DOMAIN,
    MAX_CERTIFICATE_DER,
    RECORD_DOMAIN,
    SHORT_FINGERPRINT_SIZE,
    SIGNATURE_SIZE,
    Identity,
    TrustStore,
    fingerprint,
    signing_input,
)
from gossipreg.pki import create_ca, create_member_cert

Pem = tuple[bytes, bytes]
NOW = datetime.datetime.now(datetime.UTC).timestamp()
DAY = 86400.0
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(scope="module")
def ca() -> Pem:
    return create_ca("identity test CA", days=30)


@pytest.fixture(scope="module")
def other_ca() -> Pem:
    # The same subject as ``ca``: only the signature tells them apart.
    return create_ca("identity test CA", days=30)


@pytest.fixture(scope="module")
def web1(ca: Pem) -> Identity:
    return Identity(*create_member_cert(*ca, "web-1", ips=["10.0.0.5"], days=10), name="web-1")


@pytest.fixture(scope="module")
def web2(ca: Pem) -> Identity:
    return Identity(*create_member_cert(*ca, "web-2", days=10), name="web-2")


@pytest.fixture
def store(ca: Pem, web1: Identity, web2: Identity) -> TrustStore:
    s = TrustStore(ca[0])
    assert s.admit("web-1", web1.certificate_der, NOW) == web1.fingerprint
    assert s.admit("web-2", web2.certificate_der, NOW) == web2.fingerprint
    return s


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _issue(
    ca: Pem,
    name: str,
    *,
    not_before: float = NOW - 60,
    not_after: float = NOW + DAY,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    is_ca: bool | None = False,
    digital_signature: bool | None = True,
    cn: list[str] | None = None,
) -> tuple[bytes, bytes]:
    """A certificate signed by ``ca`` with every property under the test's control:
    ``is_ca=None`` leaves out basicConstraints, ``digital_signature=None`` keyUsage.
    Returns ``(cert_pem, key_pem)``."""
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, n) for n in (cn if cn is not None else [name])]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.UTC))
    )
    if is_ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    if digital_signature is not None:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature, False, not digital_signature, False, False, False, False,
                          False, False),
            critical=True,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# ---------------------------------------------------------------- signing and verifying


def test_sign_verify_round_trip(store: TrustStore, web1: Identity) -> None:
    payload = b"\x99service\xa5greet"
    sig = web1.sign(RECORD_DOMAIN, payload)
    assert len(sig) == SIGNATURE_SIZE == 64
    assert store.verify("web-1", RECORD_DOMAIN, payload, sig)
    assert store.verify("web-1", RECORD_DOMAIN, bytearray(payload), bytearray(sig))
    assert store.verify("web-1", RECORD_DOMAIN, memoryview(payload), memoryview(sig))
    assert store.statistics()["verified"] == 3


def test_every_signature_is_64_bytes(web1: Identity) -> None:
    # r and s are padded to 32 bytes each, whatever their value.
    assert {len(web1.sign(ALIVE_DOMAIN, i.to_bytes(4, "big"))) for i in range(200)} == {64}


def test_signing_is_deterministic_where_supported(web1: Identity) -> None:
    try:
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        ec.generate_private_key(ec.SECP256R1()).sign(b"x", algorithm)
    except Exception:  # pragma: no cover - an old cryptography or OpenSSL draws nonces
        pytest.skip("this cryptography/OpenSSL build cannot sign ECDSA deterministically (RFC 6979)")
    assert web1.sign(RECORD_DOMAIN, b"same") == web1.sign(RECORD_DOMAIN, b"same")


def test_a_signature_by_one_member_does_not_verify_as_another(store: TrustStore, web1: Identity) -> None:
    sig = web1.sign(RECORD_DOMAIN, b"owner web-2 registers greeter")
    assert not store.verify("web-2", RECORD_DOMAIN, b"owner web-2 registers greeter", sig)
    assert store.statistics()["verify_failed"] == 1


def test_unknown_names_do_not_verify(store: TrustStore, web1: Identity) -> None:
    sig = web1.sign(ALIVE_DOMAIN, b"ghost")
    assert not store.verify("ghost", ALIVE_DOMAIN, b"ghost", sig)
    assert not store.known("ghost")
    assert store.statistics()["verify_unknown"] == 1


def test_domains_separate_kinds_of_statement(store: TrustStore, web1: Identity) -> None:
    domains = [RECORD_DOMAIN, ALIVE_DOMAIN, LEAVE_DOMAIN, ACCUSATION_DOMAIN]
    assert len(set(domains)) == 4
    for signed in domains:
        sig = web1.sign(signed, b"payload")
        for checked in domains:
            assert store.verify("web-1", checked, b"payload", sig) == (signed == checked)


def test_the_length_prefix_makes_the_split_unambiguous(store: TrustStore, web1: Identity) -> None:
    # Without the prefix, domain b"gossipreg/alive/v1" + payload b"X" and domain
    # b"gossipreg/alive/v" + payload b"1X" would be the same bytes.
    sig = web1.sign(ALIVE_DOMAIN, b"X")
    assert not store.verify("web-1", ALIVE_DOMAIN[:-1], b"1X", sig)
    assert signing_input(ALIVE_DOMAIN, b"X") != signing_input(ALIVE_DOMAIN[:-1], b"1X")
    assert signing_input(b"d", b"p", b"lab") == b"\x01d\x03labp"


@given(
    st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=8), st.binary(max_size=8)),
    st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=8), st.binary(max_size=8)),
)
def test_signing_input_is_injective(a: tuple[bytes, bytes, bytes], b: tuple[bytes, bytes, bytes]) -> None:
    (da, pa, la), (db, pb, lb) = a, b
    assert (signing_input(da, pa, la) == signing_input(db, pb, lb)) == (a == b)


@pytest.mark.parametrize("domain", [b"", b"x" * 256, "gossipreg/record/v1"])
def test_a_bad_domain_is_a_programming_error_when_signing(web1: Identity, domain: object) -> None:
    with pytest.raises(ConfigError, match="domain"):
        web1.sign(domain, b"p")  # type: ignore[arg-type]


@pytest.mark.parametrize("domain", [b"", b"x" * 256, "gossipreg/record/v1", None])
def test_a_bad_domain_never_verifies(store: TrustStore, web1: Identity, domain: object) -> None:
    sig = web1.sign(RECORD_DOMAIN, b"p")
    assert not store.verify("web-1", domain, b"p", sig)  # type: ignore[arg-type]


def test_the_cluster_label_is_signed(ca: Pem, web1: Identity) -> None:
    prod = Identity(*create_member_cert(*ca, "db-1", days=1), label=b"prod")
    prod_store = TrustStore(ca[0], label=b"prod")
    other_store = TrustStore(ca[0], label=b"staging")
    for s in (prod_store, other_store):
        assert s.admit("db-1", prod.certificate_der, NOW) is not None
    sig = prod.sign(RECORD_DOMAIN, b"p")
    assert prod_store.verify("db-1", RECORD_DOMAIN, b"p", sig)
    assert not other_store.verify("db-1", RECORD_DOMAIN, b"p", sig)
    with pytest.raises(ConfigError, match="label"):
        Identity(*create_member_cert(*ca, "db-2", days=1), label=b"x" * 256)
    with pytest.raises(ConfigError, match="label"):
        prod_store.admit_own(web1, NOW)  # web1 signs with no label


def test_a_tampered_payload_does_not_verify(store: TrustStore, web1: Identity) -> None:
    payload = bytes(range(40))
    sig = web1.sign(RECORD_DOMAIN, payload)
    for i in range(len(payload)):
        for bit in (0x01, 0x80):
            changed = bytearray(payload)
            changed[i] ^= bit
            assert not store.verify("web-1", RECORD_DOMAIN, bytes(changed), sig)
    assert not store.verify("web-1", RECORD_DOMAIN, payload + b"\x00", sig)
    assert not store.verify("web-1", RECORD_DOMAIN, payload[:-1], sig)


def test_tampered_truncated_and_garbage_signatures_never_verify_nor_raise(
    store: TrustStore, web1: Identity
) -> None:
    rng = random.Random(1313)
    sig = web1.sign(RECORD_DOMAIN, b"p")
    candidates: list[object] = [
        b"", sig[:63], sig + b"\x00", sig[:32], bytes(64), b"\xff" * 64, None, 7, "sig", sig.hex()
    ]
    for i in range(64):
        flipped = bytearray(sig)
        flipped[i] ^= 1 << rng.randrange(8)
        candidates.append(bytes(flipped))
    candidates += [rng.randbytes(rng.choice([0, 1, 63, 64, 65, 128])) for _ in range(300)]
    for bad in candidates:
        assert store.verify("web-1", RECORD_DOMAIN, b"p", bad) is False  # type: ignore[arg-type]
    assert store.verify("web-1", RECORD_DOMAIN, b"p", sig)


def test_signature_scalars_out_of_range_are_refused(store: TrustStore, web1: Identity) -> None:
    sig = web1.sign(RECORD_DOMAIN, b"p")
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    assert store.verify("web-1", RECORD_DOMAIN, b"p", r + (_P256_ORDER - s).to_bytes(32, "big"))  # not unique
    for bad_s in (0, _P256_ORDER, s + _P256_ORDER, (1 << 256) - 1):
        if bad_s < 1 << 256:
            assert not store.verify("web-1", RECORD_DOMAIN, b"p", r + bad_s.to_bytes(32, "big"))
    assert not store.verify("web-1", RECORD_DOMAIN, b"p", bytes(32) + sig[32:])


@pytest.mark.parametrize(
    ("name", "payload"), [(None, b"p"), (7, b"p"), ("web-1", None), ("web-1", "p"), ("web-1", 10**9)]
)
def test_verify_never_raises_for_odd_types(
    store: TrustStore, web1: Identity, name: object, payload: object
) -> None:
    sig = web1.sign(RECORD_DOMAIN, b"p")
    assert store.verify(name, RECORD_DOMAIN, payload, sig) is False  # type: ignore[arg-type]


# ---------------------------------------------------------------- fingerprints and rotation


def test_fingerprints(store: TrustStore, web1: Identity, web2: Identity) -> None:
    assert web1.fingerprint == fingerprint(web1.certificate_der)
    assert len(web1.fingerprint) == FINGERPRINT_SIZE
    assert web1.short_fingerprint == web1.fingerprint[:SHORT_FINGERPRINT_SIZE]
    sig = web1.sign(ALIVE_DOMAIN, b"p")
    assert store.verify("web-1", ALIVE_DOMAIN, b"p", sig, fingerprint=web1.short_fingerprint)
    assert store.verify("web-1", ALIVE_DOMAIN, b"p", sig, fingerprint=web1.fingerprint)
    assert not store.verify("web-1", ALIVE_DOMAIN, b"p", sig, fingerprint=web2.short_fingerprint)
    assert not store.verify("web-1", ALIVE_DOMAIN, b"p", sig, fingerprint=web1.fingerprint[:5])
    assert store.fingerprints("web-1") == (web1.fingerprint,)
    assert store.certificate("web-1", web1.short_fingerprint) == web1.certificate_der
    assert store.certificate("web-1", web2.short_fingerprint) is None
    assert store.certificate("web-1", b"") is None
    assert "web-1" in repr(web1)
    assert "PRIVATE" not in repr(web1)


def test_two_certificates_per_name_and_the_newest_issued_are_kept(ca: Pem) -> None:
    store = TrustStore(ca[0])
    old, mid, new = (Identity(*_issue(ca, "api-1", not_before=NOW - age)) for age in (3 * DAY, 2 * DAY, DAY))
    assert store.admit("api-1", old.certificate_der, NOW) is not None
    assert store.admit("api-1", new.certificate_der, NOW) is not None
    # Both verify during a rotation.
    for ident in (old, new):
        assert store.verify("api-1", RECORD_DOMAIN, b"p", ident.sign(RECORD_DOMAIN, b"p"))
    # A third, issued between them, evicts the oldest.
    assert store.admit("api-1", mid.certificate_der, NOW) is not None
    assert store.fingerprints("api-1") == (new.fingerprint, mid.fingerprint)
    assert not store.verify("api-1", RECORD_DOMAIN, b"p", old.sign(RECORD_DOMAIN, b"p"))
    # Replaying the oldest never evicts a newer one.
    assert store.admit("api-1", old.certificate_der, NOW) is None
    assert store.fingerprints("api-1") == (new.fingerprint, mid.fingerprint)
    assert store.statistics()["rejected_superseded"] == 1
    assert len(store) == 2


# ---------------------------------------------------------------- certificate rules


def test_a_certificate_of_another_ca_is_refused(ca: Pem, other_ca: Pem) -> None:
    store = TrustStore(ca[0])
    foreign = Identity(*create_member_cert(*other_ca, "web-1", days=1))
    assert store.admit("web-1", foreign.certificate_der, NOW) is None
    assert store.statistics()["rejected_not_issued_by_ca"] == 1
    assert not store.known("web-1")
    assert not store.verify("web-1", RECORD_DOMAIN, b"p", foreign.sign(RECORD_DOMAIN, b"p"))
    with pytest.raises(ConfigError, match="not issued by the cluster CA"):
        store.admit_own(foreign, NOW)


def test_validity_is_checked_at_the_wall_time_given(ca: Pem, web1: Identity) -> None:
    store = TrustStore(ca[0])
    assert store.admit("web-1", web1.certificate_der, NOW + 11 * DAY) is None
    assert store.admit("web-1", web1.certificate_der, NOW - DAY) is None
    stats = store.statistics()
    assert (stats["rejected_expired"], stats["rejected_not_yet_valid"]) == (1, 1)
    with pytest.raises(ConfigError, match="has expired"):
        store.admit_own(web1, NOW + 11 * DAY)
    with pytest.raises(ConfigError, match="not valid yet"):
        store.admit_own(web1, NOW - DAY)
    assert store.admit_own(web1, NOW) == web1.fingerprint
    # Admitted: a later admission at a time past its validity is refused too (cache hit path) ...
    assert store.admit("web-1", web1.certificate_der, NOW + 11 * DAY) is None
    assert store.admit("web-1", web1.certificate_der, NOW) == web1.fingerprint
    assert store.statistics()["admission_hits"] == 1  # only admissions that succeed count as hits
    # ... and verification at such a time does not use it.
    sig = web1.sign(RECORD_DOMAIN, b"p")
    assert store.verify("web-1", RECORD_DOMAIN, b"p", sig, wall_time=NOW)
    assert not store.verify("web-1", RECORD_DOMAIN, b"p", sig, wall_time=NOW + 11 * DAY)
    assert store.prune(NOW) == 0
    assert store.prune(NOW + 11 * DAY) == 1
    assert not store.known("web-1")
    assert len(store) == 0


def test_a_certificate_outliving_its_ca_is_refused_after_the_ca_expires(ca: Pem) -> None:
    ident = Identity(*_issue(ca, "long-1", not_after=NOW + 90 * DAY))  # the CA lasts 30 days
    store = TrustStore(ca[0])
    assert store.admit("long-1", ident.certificate_der, NOW) is not None
    assert store.admit("long-1", ident.certificate_der, NOW + 60 * DAY) is None
    assert TrustStore(ca[0]).admit("long-1", ident.certificate_der, NOW + 60 * DAY) is None


def test_the_ca_certificate_is_not_a_member_certificate(ca: Pem) -> None:
    store = TrustStore(ca[0])
    # The CA certificate is "issued by the CA" (self-signed), so only the end-entity rule stops it.
    assert store.admit("identity test CA", _der(ca[0]), NOW) is None
    assert store.statistics()["rejected_not_end_entity"] == 1
    with pytest.raises(ConfigError, match="not an end-entity certificate"):
        Identity(*ca)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"is_ca": True}, "not_end_entity"),
        ({"is_ca": None}, "not_end_entity"),
        ({"digital_signature": False}, "no_digital_signature"),
        ({"digital_signature": None}, "no_digital_signature"),
        ({"key": ec.generate_private_key(ec.SECP384R1())}, "unsupported_key"),
        ({"key": rsa.generate_private_key(65537, 2048)}, "unsupported_key"),
        ({"cn": []}, "name_mismatch"),
        ({"cn": ["svc-1", "svc-1"]}, "name_mismatch"),
    ],
)
def test_certificates_breaking_a_rule_are_refused(ca: Pem, kwargs: dict[str, object], reason: str) -> None:
    store = TrustStore(ca[0])
    cert_pem, _ = _issue(ca, "svc-1", **kwargs)  # type: ignore[arg-type]
    assert store.admit("svc-1", _der(cert_pem), NOW) is None
    assert store.statistics()[f"rejected_{reason}"] == 1
    assert len(store) == 0


def test_the_common_name_must_be_the_member_name(ca: Pem, web1: Identity) -> None:
    store = TrustStore(ca[0])
    assert store.admit("web-2", web1.certificate_der, NOW) is None
    assert store.admit("web-1 ", web1.certificate_der, NOW) is None
    assert store.statistics()["rejected_name_mismatch"] == 2
    assert not store.known("web-2")
    for bad_name in ("", "x" * 65, None, b"web-1"):
        assert store.admit(bad_name, web1.certificate_der, NOW) is None  # type: ignore[arg-type]
    assert store.statistics()["rejected_bad_name"] == 4


def test_hostile_certificate_bytes_never_raise(ca: Pem, web1: Identity) -> None:
    store = TrustStore(ca[0])
    rng = random.Random(13)
    der = web1.certificate_der
    assert store.admit("web-1", b"\x00" * (MAX_CERTIFICATE_DER + 1), NOW) is None
    assert store.statistics()["rejected_too_large"] == 1
    for bad in (b"", b"\x30", b"\x30\x82\xff\xff", rng.randbytes(500), "text", None, der[:-1]):
        assert store.admit("web-1", bad, NOW) is None  # type: ignore[arg-type]
    for _ in range(400):
        mutated = bytearray(der)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        assert store.admit("web-1", bytes(mutated), NOW) is None
    assert len(store) == 0
    assert store.statistics()["admitted"] == 0


# ---------------------------------------------------------------- the bound


def test_admitting_past_the_bound_evicts_the_least_recently_used(ca: Pem) -> None:
    assert DEFAULT_MAX_ENTRIES == 65_536
    store = TrustStore(ca[0], max_entries=4)
    idents = [Identity(*create_member_cert(*ca, f"m-{i}", days=1)) for i in range(10)]
    for ident in idents[:4]:
        assert store.admit(ident.name, ident.certificate_der, NOW) is not None
    # Using m-0 makes it recent: m-1 goes first.
    assert store.verify("m-0", RECORD_DOMAIN, b"p", idents[0].sign(RECORD_DOMAIN, b"p"))
    assert store.admit("m-4", idents[4].certificate_der, NOW) is not None
    assert store.known("m-0")
    assert not store.known("m-1")
    for ident in idents[5:]:
        assert store.admit(ident.name, ident.certificate_der, NOW) is not None
        assert len(store) == 4
    assert {i.name for i in idents if store.known(i.name)} == {"m-6", "m-7", "m-8", "m-9"}
    assert store.statistics()["evicted"] == 6
    # Evicted names verify as unknown, and admitting again works.
    assert not store.verify("m-1", RECORD_DOMAIN, b"p", idents[1].sign(RECORD_DOMAIN, b"p"))
    assert store.admit("m-1", idents[1].certificate_der, NOW) is not None
    assert len(store) == 4


def test_forget_drops_a_name(store: TrustStore, web1: Identity) -> None:
    assert store.forget("web-1") == 1
    assert store.forget("web-1") == 0
    assert not store.known("web-1")
    assert store.known("web-2")
    assert not store.verify("web-1", RECORD_DOMAIN, b"p", web1.sign(RECORD_DOMAIN, b"p"))
    assert len(store) == 1
    assert "1 certificate" in repr(store)


# ---------------------------------------------------------------- local configuration


def test_a_key_of_another_certificate_is_a_config_error(ca: Pem) -> None:
    cert_a, _ = create_member_cert(*ca, "a", days=1)
    _, key_b = create_member_cert(*ca, "b", days=1)
    with pytest.raises(ConfigError, match="does not match the certificate"):
        Identity(cert_a, key_b)


def test_the_configured_name_must_be_the_common_name(ca: Pem) -> None:
    pair = create_member_cert(*ca, "a", days=1)
    with pytest.raises(ConfigError, match="is for member 'a', not 'b'"):
        Identity(*pair, name="b")
    assert Identity(*pair, name="a").name == "a"


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda c, k: (b"not a certificate", k), "not a PEM certificate"),
        (lambda c, k: (c, b"not a key"), "not an unencrypted PEM private key"),
        (lambda c, k: (c, _encrypted(k)), "not an unencrypted PEM private key"),
    ],
)
def test_unloadable_certificates_and_keys_are_config_errors(
    ca: Pem, mangle: Callable[[bytes, bytes], tuple[bytes, bytes]], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        Identity(*mangle(*create_member_cert(*ca, "a", days=1)))


def _encrypted(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def test_keys_other_than_p256_are_config_errors(ca: Pem) -> None:
    with pytest.raises(ConfigError, match="P-256"):
        Identity(*_issue(ca, "p384", key=ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ConfigError, match="P-256"):
        Identity(*_issue(ca, "rsa", key=rsa.generate_private_key(65537, 2048)))


def test_member_certificates_without_signing_usage_are_config_errors(ca: Pem) -> None:
    with pytest.raises(ConfigError, match="digitalSignature"):
        Identity(*_issue(ca, "x", digital_signature=False))
    with pytest.raises(ConfigError, match="one common name"):
        Identity(*_issue(ca, "x", cn=[]))


def test_a_trust_store_needs_a_ca(ca: Pem, web1: Identity) -> None:
    member_pem, _ = create_member_cert(*ca, "a", days=1)
    with pytest.raises(ConfigError, match="is not a CA"):
        TrustStore(member_pem)
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        TrustStore(b"garbage")
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="max_entries"):
            TrustStore(ca[0], max_entries=bad)  # type: ignore[arg-type]


def test_validity_properties(web1: Identity) -> None:
    assert web1.not_valid_before <= NOW <= web1.not_valid_after
    assert web1.not_valid_after - web1.not_valid_before == pytest.approx(10 * DAY + 300, abs=2)
