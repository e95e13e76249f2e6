"""The keyring: AES-GCM sealing of datagrams and frames, with key rotation.

A :class:`Keyring` holds one *primary* key, which seals everything sent, and
any number of *secondary* keys, which are only tried when opening. Keys are
16, 24 or 32 bytes (AES-128, -192, -256; 32 is recommended, see
:meth:`Keyring.generate_key`).

Sealed layout (memberlist's version-1 layout, unpadded)::

    [version: 1 byte = 1][nonce: 12 bytes][ciphertext: len(plaintext)][tag: 16 bytes]

so sealing adds :data:`OVERHEAD` = 29 bytes.

Nonces: each :class:`Keyring` draws a random 96-bit starting point from
``os.urandom`` and then counts up, one per sealed message. Within a process a
nonce therefore never repeats; across the cluster (every member seals with the
same key) two members collide only if their counting ranges overlap, which
for ``m`` members sealing ``L`` messages each has probability about
``m**2 * L / 2**96`` (10,000 members sending a billion datagrams each: about
1e-12). Purely random nonces would instead be bounded by the birthday limit of
2**32 messages per key cluster-wide (NIST SP 800-38D), which a busy cluster
reaches in weeks. Rotating keys periodically (below) remains good practice.

The cluster label is the AES-GCM *additional authenticated data*: it is not
sent inside the sealed bytes, but a packet sealed under one label does not
open under another, so clusters that share a key stay apart.

:meth:`Keyring.open` tries every key, primary first, and raises
:class:`~gossipreg.AuthenticationError`, and nothing else, for any input that
is not a packet sealed by a key in the ring under that label: truncated,
unknown version, tampered, wrong key or wrong label. The keyring counts
nothing; callers count failures.

Rotation without downtime (memberlist's ``AddKey``/``UseKey``/``RemoveKey``):

1. :meth:`~Keyring.install` the new key on every member; everyone still seals
   with the old key and can now open both;
2. :meth:`~Keyring.use` the new key on every member; members that have switched
   seal with the new key, the others can open it since step 1;
3. :meth:`~Keyring.remove` the old key everywhere once step 2 is complete.

Not here, by design:

* **Replay.** AES-GCM authenticates a packet, it does not make it unique: a
  captured packet opens again. Replays are harmless because the state layer
  orders everything by incarnation numbers and hybrid-logical-clock stamps, so
  a replayed update is older than or equal to what the member already holds
  and is a no-op.
* **Identity.** Any holder of a key can seal any message: trust is possession
  of the key, as in memberlist. Per-member identity needs mutual TLS.
* **Plaintext.** Sending unsealed packets is an explicit opt-in of the
  runtime, not a mode of this class.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import AuthenticationError, ConfigError

__all__ = ["KEY_SIZES", "NONCE_SIZE", "OVERHEAD", "TAG_SIZE", "VERSION", "BytesLike", "Keyring"]

#: Version byte of the sealed layout.
VERSION = 1
#: Bytes of the AES-GCM nonce (a counter from a random start, see the module docstring).
NONCE_SIZE = 12
#: Bytes of the AES-GCM authentication tag.
TAG_SIZE = 16
#: Bytes sealing adds: version + nonce + tag.
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
#: Accepted key lengths in bytes (AES-128, AES-192, AES-256).
KEY_SIZES = (16, 24, 32)

#: What key and data arguments accept; keys are copied to ``bytes``.
BytesLike = bytes | bytearray | memoryview

_VERSION_BYTE = bytes([VERSION])
_NONCE_MASK = (1 << (8 * NONCE_SIZE)) - 1
_HEADER = 1 + NONCE_SIZE


def _check_key(key: object, where: str = "key") -> bytes:
    if isinstance(key, str):
        raise ConfigError(
            f"{where}: must be bytes, got str (use Keyring.from_base64 for base64 text)"
        )
    if not isinstance(key, bytes | bytearray | memoryview):
        raise ConfigError(f"{where}: must be bytes, got {type(key).__name__}")
    raw = bytes(key)
    if len(raw) not in KEY_SIZES:
        raise ConfigError(
            f"{where}: is {len(raw)} bytes; an AES key must be 16, 24 or 32 bytes "
            f"(32 recommended)"
        )
    return raw


class Keyring:
    """AES-GCM keys of a cluster: one primary that seals, all of them open.

    Args:
        primary: the key that seals; 16, 24 or 32 bytes.
        secondaries: further keys tried when opening. Duplicates (and a copy of
            the primary) are ignored.
        nonce_start: where the nonce counter starts. Leave it out (a random
            start) everywhere but in the deterministic simulator, which derives
            it from its seed so that runs repeat byte for byte.

    Raises:
        ConfigError: a key is not bytes or has the wrong length.
    """

    __slots__ = ("_nonces", "_ring")

    def __init__(
        self,
        primary: BytesLike,
        secondaries: Iterable[BytesLike] = (),
        *,
        nonce_start: int | None = None,
    ) -> None:
        first = _check_key(primary, "primary")
        if nonce_start is None:
            nonce_start = int.from_bytes(os.urandom(NONCE_SIZE), "big")
        elif not 0 <= nonce_start <= _NONCE_MASK:
            raise ConfigError("nonce_start: must be a 96-bit non-negative integer")
        # itertools.count's __next__ is atomic under the GIL: no nonce is handed out twice
        # even if two threads seal at once.
        self._nonces = itertools.count(nonce_start)
        self._ring: list[tuple[bytes, AESGCM]] = [(first, AESGCM(first))]
        for i, key in enumerate(secondaries):
            raw = _check_key(key, f"secondaries[{i}]")
            if raw not in self:
                self._ring.append((raw, AESGCM(raw)))

    @classmethod
    def from_base64(cls, keys: Iterable[str]) -> Keyring:
        """A keyring from base64 text keys; the first is the primary.

        Surrounding whitespace (a trailing newline from a file) is ignored.

        Raises:
            ConfigError: no keys, a key that is not valid base64, or a key of
                the wrong length; the message gives the key's index.
        """
        if isinstance(keys, str | bytes):
            raise ConfigError("keys: expected a list of base64 strings, got a single string")
        raw: list[bytes] = []
        for i, text in enumerate(keys):
            if not isinstance(text, str):
                raise ConfigError(f"keys[{i}]: must be a base64 str, got {type(text).__name__}")
            try:
                decoded = base64.b64decode(text.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"keys[{i}]: is not valid base64") from None
            raw.append(_check_key(decoded, f"keys[{i}]"))
        if not raw:
            raise ConfigError("keys: at least one key is required")
        return cls(raw[0], raw[1:])

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte (AES-256) key from ``os.urandom``."""
        return os.urandom(32)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every key, the primary first."""
        return tuple(key for key, _ in self._ring)

    @property
    def primary(self) -> bytes:
        """The key that seals."""
        return self._ring[0][0]

    def __contains__(self, key: object) -> bool:
        return any(key == installed for installed, _ in self._ring)

    def __len__(self) -> int:
        return len(self._ring)

    def __repr__(self) -> str:
        # Never show key material.
        return f"<Keyring: {len(self._ring)} key(s)>"

    def install(self, key: BytesLike) -> None:
        """Add ``key`` as a secondary key (tried when opening); no-op if installed.

        Raises:
            ConfigError: the key is not bytes or has the wrong length.
        """
        raw = _check_key(key)
        if raw not in self:
            self._ring.append((raw, AESGCM(raw)))

    def use(self, key: BytesLike) -> None:
        """Make the installed ``key`` the primary; the old primary stays as a secondary.

        Raises:
            ConfigError: the key is invalid or not installed.
        """
        raw = _check_key(key)
        for i, (installed, _) in enumerate(self._ring):
            if installed == raw:
                self._ring.insert(0, self._ring.pop(i))
                return
        raise ConfigError("key: is not installed; install it before using it")

    def remove(self, key: BytesLike) -> None:
        """Remove a secondary ``key``; no-op if it is not installed.

        Raises:
            ConfigError: the key is invalid, or it is the primary (``use``
                another key first).
        """
        raw = _check_key(key)
        if raw == self.primary:
            raise ConfigError("key: is the primary key and cannot be removed; use another first")
        self._ring = [entry for entry in self._ring if entry[0] != raw]

    def seal(self, plaintext: BytesLike, label: BytesLike) -> bytes:
        """Encrypt and authenticate ``plaintext`` with the primary key.

        Args:
            plaintext: the message.
            label: additional authenticated data, the cluster label (``b""``
                for none); :meth:`open` needs the same bytes.

        Returns:
            ``[1][nonce 12][ciphertext][tag 16]``, ``len(plaintext) + 29`` bytes.
        """
        nonce = (next(self._nonces) & _NONCE_MASK).to_bytes(NONCE_SIZE, "big")
        return _VERSION_BYTE + nonce + self._ring[0][1].encrypt(nonce, plaintext, label)

    def open(self, data: BytesLike, label: BytesLike) -> bytes:
        """Authenticate and decrypt ``data`` sealed by any key in the ring under ``label``.

        Raises:
            AuthenticationError: ``data`` is truncated, has an unknown version,
                was tampered with, or was not sealed by a key in this ring
                under ``label``. Nothing else is raised for any ``bytes``.
        """
        if len(data) < OVERHEAD:
            raise AuthenticationError(
                f"sealed data is {len(data)} bytes, shorter than the {OVERHEAD}-byte minimum"
            )
        if data[0] != VERSION:
            raise AuthenticationError(f"unknown sealed-data version {data[0]}")
        nonce = data[1:_HEADER]
        body = data[_HEADER:]
        for _, aead in self._ring:
            try:
                return aead.decrypt(nonce, body, label)
            except InvalidTag:
                continue
        raise AuthenticationError(f"no key of {len(self._ring)} in the keyring opens the data")
