"""A small PKI for mutual TLS between members: a cluster CA and member certificates.

Streams between members can run over mutual TLS (:mod:`gossipreg.tls`): each
member presents a certificate signed by the *cluster CA* and accepts only
peers that do the same. This module makes both, with EC P-256 keys and
SHA-256 signatures::

    ca_cert, ca_key = create_ca("acme gossipreg CA")
    cert, key = create_member_cert(ca_cert, ca_key, "web-1", ips=["10.0.0.5"])

Everything is PEM bytes: certificates as ``CERTIFICATE``, keys unencrypted
PKCS#8 (``PRIVATE KEY``), so they load with :class:`gossipreg.tls.TLSFiles`
and :func:`ssl.SSLContext.load_cert_chain`. Keep the CA key offline or at
least out of the members: a member needs only the CA certificate and its own
certificate and key.

The CA is a dedicated one: ``basicConstraints`` CA with path length 0 (it can
sign member certificates, not intermediate CAs), key usage limited to signing
certificates and CRLs. Member certificates are end-entity certificates
(``basicConstraints`` CA false) with key usage ``digitalSignature``,
extended key usage ``serverAuth`` and ``clientAuth`` (every member both
accepts and opens streams), the member name as common name and the given IP
addresses and DNS names as subject alternative names. A member certificate
never outlives its CA: its validity ends at the CA's at the latest.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .core.errors import ConfigError

__all__ = ["DEFAULT_CA_DAYS", "DEFAULT_MEMBER_DAYS", "create_ca", "create_member_cert"]

#: Default validity of a cluster CA, in days (10 years).
DEFAULT_CA_DAYS = 3650
#: Default validity of a member certificate, in days (the CA/Browser Forum's old 825-day bound).
DEFAULT_MEMBER_DAYS = 825
#: Validity starts this long before "now", so members whose clocks lag a little accept it.
_BACKDATE = datetime.timedelta(minutes=5)


def create_ca(
    common_name: str = "gossipreg cluster CA",
    days: int = DEFAULT_CA_DAYS,
    *,
    at: datetime.datetime | None = None,
    rng: random.Random | None = None,
) -> tuple[bytes, bytes]:
    """Create a self-signed cluster CA.

    Args:
        common_name: the CA's subject common name.
        days: validity in days from now.
        at: the moment validity is counted from (default: now).
        rng: derive the key and serial number from ``rng`` and sign
            deterministically, so the same seed gives the same bytes (for the
            simulator; never for a real cluster, whose keys must be secret).

    Returns:
        ``(cert_pem, key_pem)``: the CA certificate and its private key
        (unencrypted PKCS#8 PEM).

    Raises:
        ConfigError: an empty common name or a non-positive ``days``.
    """
    _check_name("common_name", common_name)
    _check_days(days)
    key = _new_key(rng)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = at or _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial(rng))
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=rng is not None or None)
    )
    return _cert_pem(cert), _key_pem(key)


def create_member_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    name: str,
    ips: Iterable[str] = (),
    dns: Iterable[str] = (),
    days: int = DEFAULT_MEMBER_DAYS,
    *,
    at: datetime.datetime | None = None,
    rng: random.Random | None = None,
) -> tuple[bytes, bytes]:
    """Create a member certificate signed by the cluster CA.

    Args:
        ca_cert_pem: the CA certificate (PEM), from :func:`create_ca`.
        ca_key_pem: the CA private key (unencrypted PEM).
        name: the member's name, the certificate's common name.
        ips: IP addresses (v4 or v6) for the subject alternative names.
        dns: DNS names for the subject alternative names.
        days: validity in days from now; capped at the CA's own expiry.
        at: the moment validity is counted from (default: now).
        rng: as for :func:`create_ca`: reproducible bytes, for the simulator only.

    Returns:
        ``(cert_pem, key_pem)``: the member certificate and its new private
        key (unencrypted PKCS#8 PEM).

    Raises:
        ConfigError: the CA certificate or key cannot be loaded, do not
            match, or the certificate is not a CA; or an empty name, an
            invalid IP address or DNS name, or a non-positive ``days``.
    """
    _check_name("name", name)
    _check_days(days)
    sans: list[x509.GeneralName] = []
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise ConfigError(f"ips: {ip!r} is not an IP address") from None
    for host in dns:
        if not _is_dns_name(host):
            raise ConfigError(f"dns: {host!r} is not a DNS name")
        sans.append(x509.DNSName(host))
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = _new_key(rng)
    now = at or _now()
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise ConfigError("ca_cert_pem: the CA certificate has expired")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial(rng))
        .not_valid_before(max(now - _BACKDATE, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256(), ecdsa_deterministic=rng is not None or None)
    return _cert_pem(cert), _key_pem(key)


def _new_key(rng: random.Random | None) -> ec.EllipticCurvePrivateKey:
    if rng is None:
        return ec.generate_private_key(ec.SECP256R1())
    # A scalar in [1, n - 1] of P-256 (n is just below 2**256).
    return ec.derive_private_key(1 + rng.getrandbits(255), ec.SECP256R1())


def _serial(rng: random.Random | None) -> int:
    return x509.random_serial_number() if rng is None else 1 + rng.getrandbits(150)


def _load_ca(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"ca_cert_pem: not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"ca_key_pem: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("ca_key_pem: expected an EC private key (create_ca makes one)")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigError("ca_cert_pem: the certificate is not a CA (basicConstraints CA is not set)")
    if key.public_key().public_numbers() != _ec_public(cert).public_numbers():
        raise ConfigError("ca_key_pem: the key does not match the CA certificate")
    return cert, key


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CA's subject key identifier as the authority key identifier (or one derived from its key)."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(ca_cert))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigError("ca_cert_pem: expected a CA with an EC key (create_ca makes one)")
    return public


def _check_name(field: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field}: must be a non-empty string, not {value!r}")
    if len(value) > 64:
        raise ConfigError(f"{field}: at most 64 characters (an X.509 common name), got {len(value)}")


_DNS_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _is_dns_name(host: object) -> bool:
    """An ASCII host name (A-labels for internationalised names), at most 253 characters."""
    if not isinstance(host, str) or not 0 < len(host.rstrip(".")) <= 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in host.rstrip(".").split("."))


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days: must be a positive int, not {days!r}")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
