"""Member identities: signatures by the member that alone may say something.

The keyring (:mod:`gossipreg.core.crypto`) proves only that a packet was
sealed by *a* key holder. With identities on, each member also holds a
certificate of the cluster CA (``gossipreg tls ca/cert create``,
:mod:`gossipreg.pki`) whose common name is its member name, and signs the
statements only it may make: its registrations and tombstones (records whose
``owner`` is its name), its ``alive`` (joins, refutations, updates) and its
``leave``. Receivers check such a statement against the certificate bound to
that name (:class:`TrustStore`) and drop it if the signature does not verify.
Statements others may make about a member (suspicions, deaths) are not signed
by it; the accused refutes them with a signed ``alive``. The keyring stays the
confidentiality layer: signatures sit inside sealed packets.

What is signed
    :func:`signing_input` builds the signed bytes as
    ``[len(domain): u8][domain][len(label): u8][label][payload]``. The
    *domain* names the kind of statement (:data:`RECORD_DOMAIN`,
    :data:`ALIVE_DOMAIN`, :data:`LEAVE_DOMAIN`, :data:`ACCUSATION_DOMAIN`), so
    a signature over one kind never verifies as another; the *label* is the
    cluster label, so a statement signed in one cluster does not verify in
    another cluster that shares the CA. The payload is the statement's
    canonical encoding (the codec's msgpack array, without the signature);
    the length prefixes make the split unambiguous.

Signatures
    ECDSA over P-256 with SHA-256, the curve :mod:`gossipreg.pki` issues,
    encoded as the raw big-endian ``r || s``: always :data:`SIGNATURE_SIZE`
    (64) bytes, against 70-72 bytes of variable DER. Signing is deterministic
    (RFC 6979) where the installed cryptography and OpenSSL support it, so the
    simulator stays reproducible; otherwise OpenSSL draws the nonce. ECDSA
    signatures are not unique (``(r, n - s)`` verifies too): never use one as
    an identifier.

Certificate rules (:meth:`TrustStore.admit`)
    A certificate binds a name if it is DER of at most
    :data:`MAX_CERTIFICATE_DER` bytes; is directly issued (and signed) by the
    cluster CA; is within its validity, and the CA within its own, at the
    ``wall_time`` passed in (POSIX seconds: the core reads no clock); is an
    end-entity certificate (``basicConstraints`` CA false, present) with
    ``keyUsage`` ``digitalSignature``; has an EC P-256 key; and has exactly one
    common name, equal to the name. Local configuration that breaks these
    rules (an :class:`Identity` whose key does not match its certificate, a
    CA certificate that is not a CA, a certificate of another name or CA)
    raises :class:`~gossipreg.ConfigError`; remote input never raises:
    :meth:`TrustStore.admit` returns ``None`` and :meth:`TrustStore.verify`
    ``False``, and both count why.

Bounded caches
    The store keeps at most ``max_entries`` admitted certificates
    (:data:`DEFAULT_MAX_ENTRIES`, 65,536: over six per member at 10,000
    members), evicting the least recently used, and at most
    :data:`MAX_CERTIFICATES_PER_NAME` (2, the current one and the previous one
    during a rotation) per name, keeping the most recently issued: replaying an
    older certificate of a name never evicts a newer one. Each entry is the
    public key, the DER (to pass on to members that lack it) and the validity.
    Failed admissions are not cached, so hostile input costs CPU per attempt
    (one parse and one signature check) and no memory.

Threat model
    Without identities any key holder can say anything in anyone's name: a
    forged tombstone hides another member's registration, a record stamped
    ahead overrides it, an ``alive`` plus records for a made-up member adds a
    ghost. With identities, a record or ``alive`` counts only if signed with
    the private key of a CA certificate whose common name is the record's
    owner (the ``alive``'s member): a stolen cluster key alone, or a stolen key
    plus a certificate of *another* name, can no longer add, change or delete
    a member's registrations, nor announce a member that has no certificate.
    Accusations stay possible for any key holder but are refuted by a signed
    ``alive`` the accuser cannot forge (``docs/identities-design.md``).

    Not covered: a member whose private key is stolen is fully impersonated
    until its certificate expires (there is no revocation; issue short-lived
    certificates or replace the CA). A certified member may still write
    records and tombstones, in its own name, for node ids another member
    registers, as any member may today; that owner re-asserts its own
    registration at once (the shared node id rule). A signature proves who
    said something, not when: replays of genuinely signed old statements are
    ordered away by stamps, incarnations and epochs, as without identities
    (``docs/security.md``, "Replay"). And the CA is the trust anchor: anyone
    who can have it issue a certificate can speak for that name.

``cryptography.x509`` is imported on first use, and the OpenSSL backend
loaded on first use, not when this module is imported: ``cryptography.x509``
pulls in ``email.utils``, which imports ``socket`` (for its own message ids),
and the backend imports ``threading`` (for its own locks); importing the
sans-IO core must load neither (``tests/core/test_purity.py``). The EC,
hashing and key-serialization modules are imported on first use too, so a
member without identities does not carry them (about 2.8 MiB of memory). Nothing here
performs IO, starts a thread or reads a clock.
"""

from __future__ import annotations

import datetime
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from .crypto import BytesLike
from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "ACCUSATION_DOMAIN",
    "ALIVE_DOMAIN",
    "DEFAULT_MAX_ENTRIES",
    "FINGERPRINT_SIZE",
    "LEAVE_DOMAIN",
    "MAX_CERTIFICATES_PER_NAME",
    "MAX_CERTIFICATE_DER",
    "MAX_NAME_LENGTH",
    "RECORD_DOMAIN",
    "SHORT_FINGERPRINT_SIZE",
    "SIGNATURE_SIZE",
    "Identity",
    "TrustStore",
    "fingerprint",
    "signing_input",
]

#: Domain of a catalog record (live or tombstone), signed by its owner.
RECORD_DOMAIN: Final = b"gossipreg/record/v1"
#: Domain of an ``alive`` (join, refutation, update), signed by the member it names.
ALIVE_DOMAIN: Final = b"gossipreg/alive/v1"
#: Domain of a ``leave``, signed by the member leaving.
LEAVE_DOMAIN: Final = b"gossipreg/leave/v1"
#: Domain of a ``suspect``/``dead`` signed by its *accuser* (an optional hardening,
#: see ``docs/identities-design.md``); reserved so it cannot collide with the others.
ACCUSATION_DOMAIN: Final = b"gossipreg/accusation/v1"

#: Bytes of a signature: P-256 ``r || s``, 32 bytes each, big-endian.
SIGNATURE_SIZE: Final = 64
#: Bytes of a certificate fingerprint: SHA-256 of its DER.
FINGERPRINT_SIZE: Final = 32
#: Bytes of the fingerprint prefix carried on the wire to select a name's certificate.
SHORT_FINGERPRINT_SIZE: Final = 8
#: Largest certificate accepted, in DER bytes (a member certificate of
#: :mod:`gossipreg.pki` with an IP address is 449 bytes).
MAX_CERTIFICATE_DER: Final = 4096
#: Longest member name an identity can bind (the X.509 upper bound of a common name).
MAX_NAME_LENGTH: Final = 64
#: Default bound on admitted certificates held by a :class:`TrustStore`.
DEFAULT_MAX_ENTRIES: Final = 65_536
#: Certificates kept per name: the current one and the previous one (a rotation).
MAX_CERTIFICATES_PER_NAME: Final = 2

_MAX_PREFIXED = 255
_HALF = SIGNATURE_SIZE // 2
# The order of the P-256 group: r and s must lie in [1, n - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# Why an admission failed, as counted by TrustStore.statistics() ("rejected_<reason>").
_REASONS = (
    "bad_name",
    "too_large",
    "malformed",
    "not_issued_by_ca",
    "not_yet_valid",
    "expired",
    "not_end_entity",
    "no_digital_signature",
    "unsupported_key",
    "name_mismatch",
    "superseded",
)


def signing_input(domain: bytes, payload: BytesLike, label: bytes = b"") -> bytes:
    """The bytes actually signed: ``[len(domain)][domain][len(label)][label][payload]``.

    Args:
        domain: the kind of statement, 1 to 255 bytes (one of the ``*_DOMAIN``
            constants).
        payload: the statement's canonical encoding.
        label: the cluster label (UTF-8, at most 255 bytes; ``b""`` for none).

    Raises:
        ConfigError: ``domain`` is empty or longer than 255 bytes, or
            ``label`` longer than 255 bytes (a programming error, not input).
    """
    if not isinstance(domain, bytes) or not 0 < len(domain) <= _MAX_PREFIXED:
        raise ConfigError(f"domain: must be 1 to {_MAX_PREFIXED} bytes, got {domain!r:.60}")
    if not isinstance(label, bytes) or len(label) > _MAX_PREFIXED:
        raise ConfigError(f"label: must be at most {_MAX_PREFIXED} bytes")
    return b"".join((bytes((len(domain),)), domain, bytes((len(label),)), label, payload))


def fingerprint(certificate_der: bytes) -> bytes:
    """A certificate's fingerprint: SHA-256 of its DER (:data:`FINGERPRINT_SIZE` bytes)."""
    return hashlib.sha256(certificate_der).digest()


def _load_der(der: bytes) -> x509.Certificate:
    from cryptography import x509  # lazily: see the module docstring

    return x509.load_der_x509_certificate(der)


def _load_pem(pem: bytes) -> x509.Certificate:
    from cryptography import x509  # lazily: see the module docstring

    return x509.load_pem_x509_certificate(pem)


def _common_names(cert: x509.Certificate) -> list[str]:
    from cryptography.x509.oid import NameOID  # lazily: see the module docstring

    return [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _is_p256(key: object) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec  # lazily: see the module docstring

    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _end_entity_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` is not an end-entity certificate for signing, or ``None``."""
    from cryptography import x509  # lazily: see the module docstring

    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "not_end_entity"  # without basicConstraints it is not provably an end entity
    if constraints.ca:
        return "not_end_entity"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no_digital_signature"
    return None if usage.digital_signature else "no_digital_signature"


def _seconds(moment: datetime.datetime) -> float:
    return moment.timestamp()


def _describe_time(wall_time: float) -> str:
    return datetime.datetime.fromtimestamp(wall_time, datetime.UTC).isoformat(timespec="seconds")


class Identity:
    """This member's certificate of the cluster CA and its private key; signs statements.

    Args:
        certificate_pem: the member certificate (PEM), from
            :func:`gossipreg.pki.create_member_cert`.
        key_pem: its private key (unencrypted PEM), EC P-256.
        name: the member name this identity is for; if given it must equal the
            certificate's common name.
        label: the cluster label signed into every statement
            (:attr:`Config.label_bytes <gossipreg.core.config.Config.label_bytes>`);
            the :class:`TrustStore` of every member must use the same.

    Raises:
        ConfigError: the certificate or key cannot be loaded, the key is not
            EC P-256 or does not match the certificate, the certificate is a
            CA or lacks ``digitalSignature``, it has no single common name, or
            that name is not ``name``.
    """

    __slots__ = (
        "_algorithm",
        "_der",
        "_fingerprint",
        "_key",
        "_label",
        "_name",
        "_not_after",
        "_not_before",
    )

    def __init__(
        self, certificate_pem: bytes, key_pem: bytes, *, name: str | None = None, label: bytes = b""
    ) -> None:
        try:
            cert = _load_pem(certificate_pem)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"certificate: not a PEM certificate: {exc}") from None
        from cryptography.hazmat.primitives import serialization  # lazily: see the module docstring
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"key: not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _is_p256(key):
            raise ConfigError("key: expected an EC P-256 private key (gossipreg tls cert create makes one)")
        public = cert.public_key()
        if not _is_p256(public):
            raise ConfigError("certificate: expected an EC P-256 key (gossipreg tls cert create makes one)")
        assert isinstance(public, ec.EllipticCurvePublicKey)
        if key.public_key().public_numbers() != public.public_numbers():
            raise ConfigError("key: does not match the certificate (a key of another certificate?)")
        problem = _end_entity_problem(cert)
        if problem == "not_end_entity":
            raise ConfigError(
                "certificate: is not an end-entity certificate (a CA certificate?); "
                "a member needs a member certificate"
            )
        if problem is not None:
            raise ConfigError("certificate: its key usage does not include digitalSignature")
        names = _common_names(cert)
        if len(names) != 1 or not 0 < len(names[0]) <= MAX_NAME_LENGTH:
            raise ConfigError(
                f"certificate: needs exactly one common name of 1 to {MAX_NAME_LENGTH} characters "
                f"(the member name), has {names!r}"
            )
        if name is not None and names[0] != name:
            raise ConfigError(
                f"certificate: is for member {names[0]!r}, not {name!r} "
                "(the common name must be the member name)"
            )
        signing_input(b"-", b"", label)  # checks the label
        self._name = names[0]
        self._key = key
        self._label = label
        self._der = cert.public_bytes(serialization.Encoding.DER)
        self._fingerprint = fingerprint(self._der)
        self._not_before = _seconds(cert.not_valid_before_utc)
        self._not_after = _seconds(cert.not_valid_after_utc)
        self._algorithm = _signing_algorithm(key)

    @property
    def name(self) -> str:
        """The member name: the certificate's common name."""
        return self._name

    @property
    def certificate_der(self) -> bytes:
        """The certificate, DER-encoded (what travels to other members)."""
        return self._der

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of :attr:`certificate_der`."""
        return self._fingerprint

    @property
    def short_fingerprint(self) -> bytes:
        """The first :data:`SHORT_FINGERPRINT_SIZE` bytes of :attr:`fingerprint`, as carried on the wire."""
        return self._fingerprint[:SHORT_FINGERPRINT_SIZE]

    @property
    def label(self) -> bytes:
        """The cluster label bound into every signature."""
        return self._label

    @property
    def not_valid_before(self) -> float:
        """Start of the certificate's validity, POSIX seconds."""
        return self._not_before

    @property
    def not_valid_after(self) -> float:
        """End of the certificate's validity, POSIX seconds: rotate before it."""
        return self._not_after

    def __repr__(self) -> str:
        # Never show key material.
        return f"<Identity {self._name!r} fingerprint={self._fingerprint[:SHORT_FINGERPRINT_SIZE].hex()}>"

    def sign(self, domain: bytes, payload: BytesLike) -> bytes:
        """Sign ``payload`` as a statement of kind ``domain``.

        Returns:
            :data:`SIGNATURE_SIZE` bytes, ``r || s`` big-endian.

        Raises:
            ConfigError: ``domain`` is not 1 to 255 bytes.
        """
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # lazily

        der = self._key.sign(signing_input(domain, payload, self._label), self._algorithm)
        r, s = decode_dss_signature(der)
        return r.to_bytes(_HALF, "big") + s.to_bytes(_HALF, "big")


def _signing_algorithm(key: ec.EllipticCurvePrivateKey) -> ec.ECDSA:
    """ECDSA-SHA256, deterministic (RFC 6979) if this cryptography and OpenSSL support it."""
    from cryptography.hazmat.primitives import hashes  # lazily: see the module docstring
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        key.sign(b"probe", algorithm)
    except (TypeError, UnsupportedAlgorithm):  # pragma: no cover - old cryptography or OpenSSL
        return ec.ECDSA(hashes.SHA256())
    return algorithm


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    fingerprint: bytes
    key: ec.EllipticCurvePublicKey
    der: bytes
    not_before: float
    not_after: float

    def valid_at(self, wall_time: float) -> bool:
        return self.not_before <= wall_time <= self.not_after


class TrustStore:
    """The cluster CA, and the certificates admitted for member names.

    Args:
        ca_certificate_pem: the cluster CA certificate (PEM), from
            :func:`gossipreg.pki.create_ca`.
        label: the cluster label bound into signatures (as given to
            :class:`Identity`).
        max_entries: most certificates held (least recently used evicted
            first); :data:`DEFAULT_MAX_ENTRIES` by default.

    Raises:
        ConfigError: the CA certificate cannot be loaded, is not a CA
            (``basicConstraints`` CA), may not sign certificates
            (``keyUsage`` without ``keyCertSign``), or ``max_entries`` is not
            a positive int.
    """

    __slots__ = (
        "_algorithm",
        "_by_name",
        "_ca",
        "_ca_not_after",
        "_ca_not_before",
        "_entries",
        "_label",
        "_max",
        "_stats",
    )

    def __init__(
        self, ca_certificate_pem: bytes, *, label: bytes = b"", max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        from cryptography import x509  # lazily: see the module docstring

        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigError(f"max_entries: must be a positive int, not {max_entries!r}")
        try:
            ca = _load_pem(ca_certificate_pem)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"ca_certificate: not a PEM certificate: {exc}") from None
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigError("ca_certificate: is not a CA (basicConstraints CA is not set)")
        try:
            usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise ConfigError("ca_certificate: its key usage does not allow signing certificates")
        signing_input(b"-", b"", label)  # checks the label
        self._ca = ca
        self._ca_not_before = _seconds(ca.not_valid_before_utc)
        self._ca_not_after = _seconds(ca.not_valid_after_utc)
        self._label = label
        self._max = max_entries
        from cryptography.hazmat.primitives import hashes  # lazily: see the module docstring
        from cryptography.hazmat.primitives.asymmetric import ec

        self._algorithm = ec.ECDSA(hashes.SHA256())
        self._entries: OrderedDict[tuple[str, bytes], _Entry] = OrderedDict()
        self._by_name: dict[str, list[_Entry]] = {}  # newest issued first
        self._stats: dict[str, int] = dict.fromkeys(
            ["admitted", "admission_hits", "evicted", "verified", "verify_failed", "verify_unknown"]
            + [f"rejected_{reason}" for reason in _REASONS],
            0,
        )

    # ------------------------------------------------------------ admission

    def admit(self, name: str, certificate_der: bytes, wall_time: float) -> bytes | None:
        """Bind ``certificate_der`` to member ``name`` if it passes every rule (module docstring).

        An already admitted certificate is only checked against ``wall_time``
        (and marked recently used). Never raises for any input.

        Args:
            name: the member name the certificate is offered for.
            certificate_der: the certificate, DER.
            wall_time: the current wall-clock time, POSIX seconds.

        Returns:
            the certificate's :func:`fingerprint`, or ``None`` if it was
            refused (counted in :meth:`statistics` as ``rejected_<reason>``).
        """
        entry, reason = self._check(name, certificate_der, wall_time)
        if entry is None:
            assert reason is not None
            self._stats[f"rejected_{reason}"] += 1
            return None
        return entry.fingerprint

    def admit_own(self, identity: Identity, wall_time: float) -> bytes:
        """Admit this member's own certificate, so its own statements verify.

        Raises:
            ConfigError: the identity's certificate is not one this store
                would admit (another CA, expired, not yet valid), or its label
                differs from the store's.
        """
        if identity.label != self._label:
            raise ConfigError(
                "identity: its label differs from the trust store's (use the cluster label in both)"
            )
        entry, reason = self._check(identity.name, identity.certificate_der, wall_time)
        if entry is None:
            detail = {
                "not_issued_by_ca": "was not issued by the cluster CA",
                "not_yet_valid": f"is not valid yet at {_describe_time(wall_time)}",
                "expired": f"has expired at {_describe_time(wall_time)} (or the CA has)",
            }.get(str(reason), f"was refused ({reason})")
            raise ConfigError(f"certificate: of member {identity.name!r} {detail}")
        return entry.fingerprint

    def _check(self, name: object, der: object, wall_time: float) -> tuple[_Entry | None, str | None]:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            return None, "bad_name"
        if not isinstance(der, bytes):
            return None, "malformed"
        if len(der) > MAX_CERTIFICATE_DER:
            return None, "too_large"
        fp = fingerprint(der)
        entry = self._entries.get((name, fp))
        if entry is not None:
            if not self._ca_valid(wall_time) or wall_time > entry.not_after:
                return None, "expired"
            if wall_time < entry.not_before:
                return None, "not_yet_valid"
            self._entries.move_to_end((name, fp))
            self._stats["admission_hits"] += 1
            return entry, None
        entry, reason = self._parse(name, der, fp, wall_time)
        if entry is None:
            return None, reason
        return self._insert(entry)

    def _parse(self, name: str, der: bytes, fp: bytes, wall_time: float) -> tuple[_Entry | None, str | None]:
        from cryptography.hazmat.primitives.asymmetric import ec  # lazily: see the module docstring

        try:
            cert = _load_der(der)
            public = cert.public_key()
            not_before = _seconds(cert.not_valid_before_utc)
            not_after = _seconds(cert.not_valid_after_utc)
        except Exception:  # any parse failure of hostile bytes means "malformed"
            return None, "malformed"
        try:
            cert.verify_directly_issued_by(self._ca)
        except Exception:  # ValueError (issuer name), TypeError (key type), InvalidSignature
            return None, "not_issued_by_ca"
        if wall_time < not_before or wall_time < self._ca_not_before:
            return None, "not_yet_valid"
        if wall_time > not_after or wall_time > self._ca_not_after:
            return None, "expired"
        try:
            problem = _end_entity_problem(cert)
            names = _common_names(cert)
        except Exception:  # a malformed extension surfaces only when read
            return None, "malformed"
        if problem is not None:
            return None, problem
        if not isinstance(public, ec.EllipticCurvePublicKey) or not _is_p256(public):
            return None, "unsupported_key"
        if names != [name]:
            return None, "name_mismatch"
        return _Entry(name, fp, public, der, not_before, not_after), None

    def _insert(self, entry: _Entry) -> tuple[_Entry | None, str | None]:
        same_name = self._by_name.setdefault(entry.name, [])
        same_name.append(entry)
        same_name.sort(key=lambda e: e.not_before, reverse=True)
        while len(same_name) > MAX_CERTIFICATES_PER_NAME:
            dropped = same_name.pop()
            if dropped is entry:
                if not same_name:  # pragma: no cover - MAX_CERTIFICATES_PER_NAME >= 1
                    del self._by_name[entry.name]
                return None, "superseded"
            del self._entries[(dropped.name, dropped.fingerprint)]
            self._stats["evicted"] += 1
        self._entries[(entry.name, entry.fingerprint)] = entry
        while len(self._entries) > self._max:
            _, old = self._entries.popitem(last=False)
            self._unindex(old)
            self._stats["evicted"] += 1
        self._stats["admitted"] += 1
        return entry, None

    def _unindex(self, entry: _Entry) -> None:
        same_name = self._by_name.get(entry.name)
        if same_name is None:  # pragma: no cover - index and entries stay in step
            return
        same_name[:] = [e for e in same_name if e is not entry]
        if not same_name:
            del self._by_name[entry.name]

    def _ca_valid(self, wall_time: float) -> bool:
        return self._ca_not_before <= wall_time <= self._ca_not_after

    # ------------------------------------------------------------ verification

    def verify(
        self,
        name: str,
        domain: bytes,
        payload: BytesLike,
        signature: BytesLike,
        *,
        fingerprint: bytes | None = None,
        wall_time: float | None = None,
    ) -> bool:
        """Whether ``signature`` is ``name``'s over ``payload`` as a statement of kind ``domain``.

        Tries the certificates admitted for ``name`` (at most
        :data:`MAX_CERTIFICATES_PER_NAME`), newest first. Never raises.

        Args:
            name: the member that must have signed (a record's owner, an
                alive's member).
            domain: the kind of statement (a ``*_DOMAIN`` constant).
            payload: the statement's canonical encoding.
            signature: :data:`SIGNATURE_SIZE` bytes, ``r || s``.
            fingerprint: if given (a :data:`SHORT_FINGERPRINT_SIZE` or
                :data:`FINGERPRINT_SIZE`-byte prefix of a certificate's
                fingerprint), only that certificate of ``name`` is tried.
            wall_time: if given, certificates not valid at that time (POSIX
                seconds) are not used.

        Returns:
            ``False`` for an unknown name or fingerprint, a malformed or wrong
            signature, a bad domain, or any other input that does not verify.
        """
        candidates = self._by_name.get(name) if isinstance(name, str) else None
        if not candidates:
            self._stats["verify_unknown"] += 1
            return False
        if fingerprint is not None:
            if not isinstance(fingerprint, bytes) or len(fingerprint) not in (
                SHORT_FINGERPRINT_SIZE,
                FINGERPRINT_SIZE,
            ):
                self._stats["verify_failed"] += 1
                return False
            candidates = [e for e in candidates if e.fingerprint.startswith(fingerprint)]
            if not candidates:
                self._stats["verify_unknown"] += 1
                return False
        if wall_time is not None:
            candidates = [e for e in candidates if e.valid_at(wall_time) and self._ca_valid(wall_time)]
        der = _der_signature(signature)
        if (
            der is None
            or not isinstance(domain, bytes)
            or not 0 < len(domain) <= _MAX_PREFIXED
            or not isinstance(payload, bytes | bytearray | memoryview)
        ):
            self._stats["verify_failed"] += 1
            return False
        data = signing_input(domain, payload, self._label)
        for entry in candidates:
            try:
                entry.key.verify(der, data, self._algorithm)
            except InvalidSignature:
                continue
            self._entries.move_to_end((entry.name, entry.fingerprint))
            self._stats["verified"] += 1
            return True
        self._stats["verify_failed"] += 1
        return False

    # ------------------------------------------------------------ queries and upkeep

    def known(self, name: str) -> bool:
        """Whether a certificate is admitted for ``name``."""
        return name in self._by_name

    def fingerprints(self, name: str) -> tuple[bytes, ...]:
        """Fingerprints of the certificates admitted for ``name``, most recently issued first."""
        return tuple(e.fingerprint for e in self._by_name.get(name, ()))

    def certificate(self, name: str, fingerprint: bytes) -> bytes | None:
        """The DER of ``name``'s admitted certificate whose fingerprint starts with
        ``fingerprint`` (to pass on to a member that lacks it), or ``None``."""
        if not isinstance(fingerprint, bytes) or not fingerprint:
            return None
        for e in self._by_name.get(name, ()):
            if e.fingerprint.startswith(fingerprint):
                return e.der
        return None

    def forget(self, name: str) -> int:
        """Drop every certificate of ``name`` (a reaped member); returns how many."""
        same_name = self._by_name.pop(name, [])
        for e in same_name:
            del self._entries[(e.name, e.fingerprint)]
        return len(same_name)

    def prune(self, wall_time: float) -> int:
        """Drop the certificates that have expired at ``wall_time``; returns how many."""
        expired = [e for e in self._entries.values() if wall_time > e.not_after]
        for e in expired:
            del self._entries[(e.name, e.fingerprint)]
            self._unindex(e)
        return len(expired)

    @property
    def label(self) -> bytes:
        """The cluster label bound into signatures."""
        return self._label

    @property
    def max_entries(self) -> int:
        """The bound on admitted certificates held."""
        return self._max

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<TrustStore: {len(self._entries)} certificate(s) of {len(self._by_name)} member(s)>"

    def statistics(self) -> dict[str, int]:
        """Counters: ``admitted``, ``admission_hits``, ``evicted``, ``verified``,
        ``verify_failed``, ``verify_unknown`` and ``rejected_<reason>`` per refusal reason."""
        return dict(self._stats)


def _der_signature(signature: object) -> bytes | None:
    """The DER form of a raw ``r || s`` signature, or ``None`` if it cannot be one."""
    if not isinstance(signature, bytes | bytearray | memoryview) or len(signature) != SIGNATURE_SIZE:
        return None
    raw = bytes(signature)
    r = int.from_bytes(raw[:_HALF], "big")
    s = int.from_bytes(raw[_HALF:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        return None
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # lazily

    return encode_dss_signature(r, s)
