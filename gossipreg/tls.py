"""Mutual TLS for streams: contexts from a cluster CA and a member certificate.

Every member both accepts and opens streams, so it needs two contexts, each
requiring the peer to present a certificate signed by the cluster CA (mutual
TLS) and speaking TLS 1.3 only. Members are addressed by IP and names change,
so host names are not checked: the trust anchor is the cluster CA, which
should sign nothing but member certificates (``gossipreg tls`` makes such a CA).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from os import PathLike

from .core.errors import ConfigError
from .core.identity import Identity, TrustStore
from .runtime.driver import TLSContexts

__all__ = ["TLSContexts", "TLSFiles", "contexts_from_files", "load_tls"]


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths of the cluster CA certificate and this member's certificate and key (PEM)."""

    ca: str | PathLike[str]
    cert: str | PathLike[str]
    key: str | PathLike[str]


def contexts_from_files(files: TLSFiles) -> TLSContexts:
    """Build the server and client contexts of a member.

    Raises:
        ConfigError: a file is missing or unreadable, or the key does not match.
    """
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files.ca)
        for ctx in (server, client):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(files.cert, files.key)
            ctx.verify_mode = ssl.CERT_REQUIRED
        client.check_hostname = False
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load the CA, certificate or key: {exc}") from None
    return TLSContexts(server=server, client=client)


def load_tls(tls: TLSContexts | TLSFiles | tuple[object, object] | None) -> TLSContexts | None:
    """Normalise the ``tls`` option of :func:`gossipreg.open_registry`.

    Raises:
        ConfigError: not one of the accepted forms.
    """
    if tls is None or isinstance(tls, TLSContexts):
        return tls
    if isinstance(tls, TLSFiles):
        return contexts_from_files(tls)
    if isinstance(tls, tuple) and len(tls) == 2:
        server, client = tls
        if isinstance(server, ssl.SSLContext) and isinstance(client, ssl.SSLContext):
            return TLSContexts(server=server, client=client)
    raise ConfigError(
        "tls: expected TLSFiles(ca, cert, key), TLSContexts, or a (server, client) SSLContext pair"
    )


def load_identity(
    files: TLSFiles | None, name: str | None, label: bytes = b""
) -> tuple[Identity, TrustStore] | None:
    """Normalise the ``identity`` option of :func:`gossipreg.open_registry`: this
    member's :class:`~gossipreg.core.identity.Identity` and a trust store of the
    cluster CA, or ``None`` without member identities.

    Raises:
        ConfigError: not a :class:`TLSFiles`; a file is missing or unreadable;
            the certificate is not a member certificate of that CA, does not
            match the key, or is for another name than ``name``.
    """
    if files is None:
        return None
    if not isinstance(files, TLSFiles):
        raise ConfigError(f"identity: must be a TLSFiles (ca, cert, key paths), not {type(files).__name__}")
    pems = []
    for what, path in (("ca", files.ca), ("cert", files.cert), ("key", files.key)):
        try:
            with open(path, "rb") as f:
                pems.append(f.read())
        except OSError as exc:
            raise ConfigError(f"identity.{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    ca, cert, key = pems
    ident = Identity(cert, key, name=name, label=label)
    return ident, TrustStore(ca, label=label)
