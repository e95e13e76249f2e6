"""The cluster PKI: CA and member certificates, their extensions, and mutual TLS with them."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gossipreg.core.errors import ConfigError
from gossipreg.pki import create_ca, create_member_cert
from gossipreg.tls import TLSFiles, contexts_from_files


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return create_ca("test cluster CA", days=30)


@pytest.fixture(scope="module")
def member(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return create_member_cert(*ca, "web-1", ips=["127.0.0.1", "::1"], dns=["web-1.example"], days=10)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


T = TypeVar("T", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ---------------------------------------------------------------- the CA


def test_ca_is_a_self_signed_p256_ca(ca: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = ca
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8
    cert, key = _cert(cert_pem), _key(key_pem)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test cluster CA"
    cert.verify_directly_issued_by(cert)  # self-signed, signature valid
    assert cert.serial_number > 0


def test_ca_extensions(ca: tuple[bytes, bytes]) -> None:
    cert = _cert(ca[0])
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.key_encipherment
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_ca_validity(ca: tuple[bytes, bytes]) -> None:
    cert = _cert(ca[0])
    now = _now()
    assert cert.not_valid_before_utc <= now
    assert cert.not_valid_before_utc >= now - datetime.timedelta(hours=1)
    lifetime = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)


def test_each_ca_is_new() -> None:
    a, b = create_ca("x", days=1), create_ca("x", days=1)
    assert a[1] != b[1]
    assert _cert(a[0]).serial_number != _cert(b[0]).serial_number


# ---------------------------------------------------------------- member certificates


def test_member_cert_is_issued_by_the_ca(ca: tuple[bytes, bytes], member: tuple[bytes, bytes]) -> None:
    ca_cert, cert, key = _cert(ca[0]), _cert(member[0]), _key(member[1])
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert key.private_numbers() != _key(ca[1]).private_numbers()
    cert.verify_directly_issued_by(ca_cert)
    assert cert.issuer == ca_cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-1"
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca_cert, x509.SubjectKeyIdentifier).value.digest


def test_member_cert_extensions(member: tuple[bytes, bytes]) -> None:
    cert = _cert(member[0])
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    assert not ku.value.crl_sign
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["web-1.example"]
    _ext(cert, x509.SubjectKeyIdentifier)


def test_member_cert_verifies_as_server_and_client(
    ca: tuple[bytes, bytes], member: tuple[bytes, bytes]
) -> None:
    """RFC 5280 path validation (cryptography's verifier), for both TLS roles."""
    store = Store([_cert(ca[0])])
    leaf = _cert(member[0])
    for subject in (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("web-1.example")):
        verifier = PolicyBuilder().store(store).build_server_verifier(subject)
        chain = verifier.verify(leaf, [])
        assert chain[-1] == _cert(ca[0])
    client = PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
    assert client.chain[-1] == _cert(ca[0])
    wrong = PolicyBuilder().store(store).build_server_verifier(x509.DNSName("other.example"))
    with pytest.raises(VerificationError):
        wrong.verify(leaf, [])


def test_member_cert_from_another_ca_does_not_verify(ca: tuple[bytes, bytes]) -> None:
    other = create_member_cert(*create_ca("other CA", days=1), "intruder", ips=["127.0.0.1"])
    verifier = PolicyBuilder().store(Store([_cert(ca[0])])).build_client_verifier()
    with pytest.raises(VerificationError):
        verifier.verify(_cert(other[0]), [])


def test_member_cert_without_names_has_no_san(ca: tuple[bytes, bytes]) -> None:
    cert = _cert(create_member_cert(*ca, "bare")[0])
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    cert.verify_directly_issued_by(_cert(ca[0]))


def test_member_cert_validity_is_capped_by_the_ca(ca: tuple[bytes, bytes]) -> None:
    ca_cert = _cert(ca[0])
    short = _cert(create_member_cert(*ca, "short", days=2)[0])
    assert datetime.timedelta(days=1) < short.not_valid_after_utc - _now() <= datetime.timedelta(days=2)
    long = _cert(create_member_cert(*ca, "long", days=3650)[0])
    assert long.not_valid_after_utc == ca_cert.not_valid_after_utc
    assert long.not_valid_before_utc >= ca_cert.not_valid_before_utc


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"days": 0}, "days"),
        ({"days": -1}, "days"),
        ({"days": True}, "days"),
        ({"days": 1.5}, "days"),
        ({"ips": ["not-an-ip"]}, "ips"),
        ({"ips": ["10.0.0.256"]}, "ips"),
        ({"dns": [""]}, "dns"),
        ({"dns": ["has space.example"]}, "dns"),
        ({"dns": ["-bad.example"]}, "dns"),
        ({"dns": ["b\u00fccher.example"]}, "dns"),
        ({"dns": ["a" * 64 + ".example"]}, "dns"),
    ],
)
def test_member_cert_rejects_bad_arguments(
    ca: tuple[bytes, bytes], kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"name": "m", **kwargs}
    with pytest.raises(ConfigError, match=f"^{field}:"):
        create_member_cert(ca[0], ca[1], **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "field"), [({"common_name": ""}, "common_name"), ({"days": 0}, "days")])
def test_ca_rejects_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        create_ca(**kwargs)  # type: ignore[arg-type]


def test_member_cert_rejects_a_bad_ca(ca: tuple[bytes, bytes], member: tuple[bytes, bytes]) -> None:
    other_ca = create_ca("other", days=1)
    with pytest.raises(ConfigError, match=r"^ca_key_pem: the key does not match"):
        create_member_cert(ca[0], other_ca[1], "m")
    with pytest.raises(ConfigError, match=r"^ca_cert_pem: the certificate is not a CA"):
        create_member_cert(member[0], member[1], "m")
    with pytest.raises(ConfigError, match=r"^ca_cert_pem: not a PEM certificate"):
        create_member_cert(b"garbage", ca[1], "m")
    with pytest.raises(ConfigError, match=r"^ca_key_pem: not an unencrypted PEM private key"):
        create_member_cert(ca[0], b"garbage", "m")
    encrypted = _key(ca[1]).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ConfigError, match=r"^ca_key_pem:"):
        create_member_cert(ca[0], encrypted, "m")


# ---------------------------------------------------------------- mutual TLS with the PKI


def _write(tmp: Path, name: str, ca_pem: bytes, cert: tuple[bytes, bytes]) -> TLSFiles:
    (tmp / f"{name}.crt").write_bytes(cert[0])
    (tmp / f"{name}.key").write_bytes(cert[1])
    (tmp / f"{name}-ca.crt").write_bytes(ca_pem)
    return TLSFiles(tmp / f"{name}-ca.crt", tmp / f"{name}.crt", tmp / f"{name}.key")


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake in memory; raises ssl.SSLError if either side refuses."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for tag, obj in (("c", client), ("s", server)):
            if not done[tag]:
                try:
                    obj.do_handshake()
                    done[tag] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server verifies the client certificate when it reads the client's
            # Finished; exchange a byte each way so either side's refusal surfaces here.
            client.write(b"x")
            s_in.write(c_out.read())
            assert server.read(1) == b"x"
            server.write(b"y")
            c_in.write(s_out.read())
            assert client.read(1) == b"y"
            return client, server
    raise AssertionError("handshake did not finish")


def test_tls_contexts_from_pki_files_complete_a_mutual_handshake(
    ca: tuple[bytes, bytes], tmp_path: Path
) -> None:
    a = contexts_from_files(_write(tmp_path, "a", ca[0], create_member_cert(*ca, "a", ips=["127.0.0.1"])))
    b = contexts_from_files(_write(tmp_path, "b", ca[0], create_member_cert(*ca, "b", ips=["127.0.0.1"])))
    client, server = _handshake(a.client, b.server)
    assert client.version() == "TLSv1.3"
    peer = server.getpeercert()
    assert peer is not None
    assert ("commonName", "a") in [pair for rdn in peer["subject"] for pair in rdn]


def test_tls_refuses_a_member_of_another_ca(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    good = contexts_from_files(_write(tmp_path, "good", ca[0], create_member_cert(*ca, "good")))
    other_ca = create_ca("other", days=1)
    bad = contexts_from_files(_write(tmp_path, "bad", other_ca[0], create_member_cert(*other_ca, "bad")))
    with pytest.raises(ssl.SSLError):
        _handshake(bad.client, good.server)  # the client rejects the server's certificate
    with pytest.raises(ssl.SSLError):
        _handshake(good.client, bad.server)
    # Trusting the right CA is not enough: the server refuses the client's certificate.
    intruder = contexts_from_files(_write(tmp_path, "intruder", ca[0], create_member_cert(*other_ca, "i")))
    with pytest.raises(ssl.SSLError):
        _handshake(intruder.client, good.server)
