"""Keyring management for the agent: fingerprints, runtime changes, the keyring file.

Keys never leave the agent: the API shows a *fingerprint* of each key, the
first 16 hex digits of its SHA-256 (:func:`fingerprint`), which identifies a
key without revealing it.

:class:`KeyringManager` applies ``install`` / ``use`` / ``remove`` to the
running member's keyring (they take effect at once: the member seals and
opens with the changed ring from its next packet) and, when the agent was
started with a keyring file, rewrites that file first, so a restarted agent
comes back with the keys the cluster uses now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from .._files import write_atomically
from ..core.crypto import KEY_SIZES, Keyring
from ..core.errors import ConfigError

__all__ = [
    "FINGERPRINT_HEX",
    "KeyringChange",
    "KeyringManager",
    "KeyringOp",
    "decode_key",
    "fingerprint",
    "write_keyring_file",
]

#: Hex digits of SHA-256 shown as a key's fingerprint (64 bits).
FINGERPRINT_HEX = 16

#: The keyring operations, in rotation order.
KeyringOp = Literal["install", "use", "remove"]


def fingerprint(key: bytes) -> str:
    """The fingerprint of a raw key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:FINGERPRINT_HEX]


def decode_key(text: object) -> bytes:
    """Decode a base64 key as given to the API or the command line.

    Raises:
        ConfigError: not a string, not base64, or not 16, 24 or 32 bytes; the
            message starts with ``key:``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"key: must be a base64 string, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("key: is not valid base64") from None
    if len(raw) not in KEY_SIZES:
        raise ConfigError(f"key: is {len(raw)} bytes; an AES key must be 16, 24 or 32 bytes (32 recommended)")
    return raw


def write_keyring_file(path: Path, keys: tuple[bytes, ...]) -> None:
    """Replace the keyring file at ``path`` with ``keys`` (primary first), atomically.

    The new file is written next to the old one and renamed over it, keeping
    the old file's permission bits (0600 for a new file).

    Raises:
        OSError: the file cannot be written.
    """
    lines = [
        "# gossipreg keyring: base64 AES keys, one a line, the first is the primary.",
        "# Rewritten by the gossipreg agent on every keyring change.",
        *(base64.b64encode(k).decode("ascii") for k in keys),
    ]
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"), mode)


@dataclass(frozen=True, slots=True)
class KeyringChange:
    """What a keyring operation did."""

    op: KeyringOp
    fingerprint: str
    changed: bool
    """False when the operation was a no-op (already installed, already primary, not installed)."""


class KeyringManager:
    """Runtime changes to one member's keyring, persisted to its keyring file if any.

    Args:
        keyring: the member's live keyring (mutated in place), or ``None`` for
            an agent running insecure.
        path: the keyring file to rewrite on every change, or ``None``.
    """

    def __init__(self, keyring: Keyring | None, path: Path | None = None) -> None:
        self.keyring = keyring
        self.path = path
        self._lock = trio.Lock()

    def describe(self) -> dict[str, Any]:
        """``{"keys": [{"fingerprint", "primary"}...], "primary": fp}``, primary first; no key material."""
        if self.keyring is None:
            return {"insecure": True, "keys": [], "primary": None}
        keys = self.keyring.keys
        return {
            "insecure": False,
            "keys": [{"fingerprint": fingerprint(k), "primary": i == 0} for i, k in enumerate(keys)],
            "primary": fingerprint(keys[0]),
        }

    async def apply(self, op: KeyringOp, key: bytes) -> KeyringChange:
        """Apply ``op`` with the raw ``key``: persist the new ring first, then change the live one.

        Raises:
            ConfigError: the agent has no keyring, ``use`` of a key not
                installed, or ``remove`` of the primary.
            OSError: the keyring file could not be rewritten (nothing changed).
        """
        ring = self.keyring
        if ring is None:
            raise ConfigError(
                "keyring: this agent runs without encryption (insecure); a keyring cannot be added "
                "at runtime, restart it with --keyring-file"
            )
        async with self._lock:
            before = ring.keys
            trial = Keyring(before[0], before[1:])
            _run(trial, op, key)
            changed = trial.keys != before
            if changed and self.path is not None:
                await trio.to_thread.run_sync(write_keyring_file, self.path, trial.keys)
            _run(ring, op, key)
            return KeyringChange(op, fingerprint(key), changed)


def _run(ring: Keyring, op: KeyringOp, key: bytes) -> None:
    if op == "install":
        ring.install(key)
    elif op == "use":
        ring.use(key)
    else:
        ring.remove(key)
