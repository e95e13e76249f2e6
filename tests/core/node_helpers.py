"""Helpers of the core's unit tests: services, and stream frames built and read by hand.

The network itself is the test kit's :class:`gossipreg.testing.CoreNetwork`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gossipreg.core import chunks, codec
from gossipreg.core.crypto import Keyring
from gossipreg.core.model import Node, Service
from gossipreg.core.node import NodeCore
from gossipreg.testing import TEST_KEY

KEY = TEST_KEY
#: The stream label of the default config (the cluster label is empty).
STREAM_LABEL = chunks.STREAM_LABEL_SUFFIX
OTHER_KEY = bytes(range(1, 33))


def service(name: str = "greeter", *node_ids: str, version: str = "1.0") -> Service:
    ids = node_ids or (f"{name}-1",)
    return Service(name, version, nodes=tuple(Node(i, f"10.9.0.1:{8000 + n}") for n, i in enumerate(ids)))


def stream_frame(
    obj: list[Any], *, ring: Keyring | None = None, initiator: bool = True, seq: int = 0,
    label: bytes = STREAM_LABEL,
) -> bytes:
    """``obj`` as the one sealed chunk a peer would send on a stream (``ring`` default: KEY's)."""
    [frame] = chunks.seal_chunks(ring or Keyring(KEY), label, codec.pack_stream(obj),
                                 initiator=initiator, seq=seq)
    return frame


def plain_stream_frame(obj: list[Any]) -> bytes:
    """``obj`` as the one plaintext chunk a peer of an insecure cluster would send."""
    [frame] = chunks.seal_chunks(None, b"", codec.pack_stream(obj), initiator=True, seq=0)
    return frame


def read_stream(frames: Iterable[bytes], *, ring: Keyring | None = None, initiator: bool = True,
                label: bytes = STREAM_LABEL) -> list[list[Any]]:
    """Decode the messages of consecutive chunks ``frames`` (from sequence number 0)."""
    messages: list[list[Any]] = []
    partial = b""
    for seq, frame in enumerate(frames):
        flag, piece = chunks.open_chunk(ring, label, frame, initiator=initiator, seq=seq)
        partial += piece
        if flag == chunks.LAST:
            messages.append(codec.unpack_stream(partial))
            partial = b""
    return messages


def stat(core: NodeCore, name: str) -> int:
    """The member's counter ``name`` (see :meth:`NodeCore.statistics`)."""
    return core.statistics()[name]


def plain(*msgs: codec.Message) -> bytes:
    """``msgs`` as one plaintext datagram."""
    return codec.pack_datagram([codec.encode_message(m) for m in msgs])


def sealed(*msgs: codec.Message) -> bytes:
    """``msgs`` as one datagram sealed with :data:`KEY` (the default label)."""
    return Keyring(KEY).seal(codec.pack_datagram([codec.encode_message(m) for m in msgs]), b"")
