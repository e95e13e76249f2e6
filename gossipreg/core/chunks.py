"""Stream messages as sealed chunks, each authenticated the moment it arrives.

A stream message (a push-pull state, a check, a fetch answer) can be large:
a catalog of thousands of registrations is megabytes. If it travelled as
one sealed frame, a receiver would have to buffer all of it before it could
tell a member from an attacker, and anyone able to open a TCP connection
could make it hold ``max_stream_frame`` bytes per connection without a key.
So a message is cut into *chunks* of at most :data:`CHUNK` plaintext bytes,
each sealed on its own. A receiver opens every chunk as it arrives and keeps
only authenticated bytes; before authentication it holds at most one frame
of :data:`MAX_FRAME` bytes per connection.

Chunk plaintext::

    [flag: u8 = MORE (0) or LAST (1)][piece: up to CHUNK bytes]

The message is the concatenation of the pieces up to and including the
chunk flagged ``LAST``. Each chunk is sealed under the stream label extended
with the direction (``i`` initiator to responder, ``r`` back) and the
chunk's sequence number in that direction (u64, from 0); none of this is
sent. A chunk therefore opens only at its own place in its own direction:
an on-path attacker can drop or cut a stream but cannot reorder, splice or
reflect its chunks. Without a keyring (an explicit ``insecure`` cluster)
chunks are plaintext and nothing is authenticated.

This module is pure: it seals and opens bytes with a
:class:`~gossipreg.core.crypto.Keyring` and keeps no state; the node keeps
each stream's sequence numbers and partial message.
"""

from __future__ import annotations

from .crypto import OVERHEAD, Keyring
from .errors import DecodeError

__all__ = ["CHUNK", "LAST", "MAX_FRAME", "MORE", "chunk_label", "open_chunk", "seal_chunks"]

#: Most plaintext bytes of a message carried by one chunk.
CHUNK = 64 * 1024
#: Flag of a chunk that more chunks of the same message follow.
MORE = 0
#: Flag of a message's last chunk.
LAST = 1
#: Largest frame a chunk makes: flag, piece and the keyring's sealing overhead.
MAX_FRAME = 1 + CHUNK + OVERHEAD
#: What follows the cluster label in the label streams are sealed under (datagrams
#: are sealed under the cluster label alone, so a datagram never opens as a chunk).
STREAM_LABEL_SUFFIX = b"\x00gossipreg-stream"


#: Start of a refusal: the one unsealed frame a member writes on an inbound stream
#: whose first frame it cannot accept, before it closes the stream, so that a
#: joiner learns why instead of seeing only a closed stream. It cannot be taken
#: for a chunk: a sealed frame starts with the key version (1) and a plaintext
#: chunk with its flag (0 or 1). It carries one byte after this prefix: a key of
#: :data:`REFUSALS`. Unauthenticated, so only ever a hint for an error message.
REFUSAL_PREFIX = b"\xffgossipreg-refused:"
#: Why a member refused a stream, by code, as the refused member should read it.
REFUSALS = {
    1: "the seed cannot open this member's messages: no key of the two keyrings is shared, "
    "or the cluster labels differ",
    2: "the seed runs with a keyring and refuses plaintext, and this member runs insecure=True: "
    "configure the cluster keyring here",
    3: "the seed runs insecure=True and cannot open sealed messages: configure the same keyring "
    "on the seed, or run this member insecure too",
}
#: The refusal codes, by the counter of the cause they report.
REFUSAL_CODES = {"auth_failures": 1, "plaintext_rejected": 2, "sealed_received_while_insecure": 3}


def refusal(code: int) -> bytes:
    """The refusal frame of ``code`` (a key of :data:`REFUSALS`)."""
    return REFUSAL_PREFIX + bytes([code])


def read_refusal(frame: bytes) -> str | None:
    """The reason a refusal frame gives, or ``None`` if ``frame`` is not a refusal
    (an unknown code reads as an unspecified refusal)."""
    if not frame.startswith(REFUSAL_PREFIX):
        return None
    code = frame[len(REFUSAL_PREFIX) :]
    if len(code) == 1 and code[0] in REFUSALS:
        return REFUSALS[code[0]]
    return "the seed refused this member's stream (an unknown reason: a newer version?)"


def chunk_label(label: bytes, *, initiator: bool, seq: int) -> bytes:
    """The additional authenticated data of chunk ``seq`` sent by the stream's
    initiator (``initiator=True``) or its responder."""
    return label + (b"i" if initiator else b"r") + seq.to_bytes(8, "big")


def seal_chunks(
    keyring: Keyring | None, label: bytes, message: bytes, *, initiator: bool, seq: int
) -> list[bytes]:
    """Cut ``message`` into chunks and seal each; the first gets sequence number ``seq``.

    Returns the frames to send, in order (at least one: an empty message is
    one empty ``LAST`` chunk). With ``keyring`` None they are plaintext.
    """
    pieces = [message[i : i + CHUNK] for i in range(0, len(message), CHUNK)] or [b""]
    frames = []
    for n, piece in enumerate(pieces):
        plain = bytes([LAST if n == len(pieces) - 1 else MORE]) + piece
        if keyring is None:
            frames.append(plain)
        else:
            frames.append(keyring.seal(plain, chunk_label(label, initiator=initiator, seq=seq + n)))
    return frames


def open_chunk(
    keyring: Keyring | None, label: bytes, frame: bytes, *, initiator: bool, seq: int
) -> tuple[int, bytes]:
    """Open chunk ``seq`` sent by the initiator (or responder): ``(flag, piece)``.

    Raises:
        AuthenticationError: the frame does not authenticate at that place
            (wrong key, label, direction or sequence number; tampered or truncated).
        DecodeError: it authenticates but is not a chunk (empty, an unknown
            flag, a piece over :data:`CHUNK` bytes).
    """
    if keyring is None:
        plain = frame
    else:
        plain = keyring.open(frame, chunk_label(label, initiator=initiator, seq=seq))
    if not plain or plain[0] not in (MORE, LAST):
        raise DecodeError("stream chunk: missing or unknown flag")
    if len(plain) > 1 + CHUNK:
        raise DecodeError(f"stream chunk: piece of {len(plain) - 1} bytes exceeds {CHUNK}")
    return plain[0], plain[1:]
