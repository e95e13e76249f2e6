"""Length-prefixed frames over a trio stream, with a size limit and timeouts.

Each stream message is ``[length: u32 big-endian][payload]``. A frame longer
than ``max_frame`` is refused before anything is allocated for it, and a
peer that stalls mid-frame hits the read timeout; both raise
:class:`FrameError`, and the caller closes the stream.
"""

from __future__ import annotations

import trio

__all__ = ["FrameError", "FramedStream", "ForeignProtocolError"]

_HEADER = 4


class FrameError(Exception):
    """The peer sent a frame that is too large, stalled, or closed mid-frame."""


class ForeignProtocolError(FrameError):
    """The peer speaks another protocol: what arrived is not a frame but, say, an
    HTTP response (the address is an HTTP port, not a gossip port)."""


#: First bytes of the answers of protocols a gossip port is mistaken for, and what they are.
_FOREIGN = {b"HTTP": "HTTP (an agent's API port?)", b"SSH-": "SSH", b"\x15\x03\x01\x00": "TLS (an alert)"}


class FramedStream:
    """Message framing over ``stream``.

    Args:
        stream: the byte stream (TCP, TLS or in-memory).
        max_frame: largest payload accepted, in bytes.
        timeout: seconds allowed for one whole frame to arrive once its first
            byte is here, and for a send to complete.
    """

    def __init__(self, stream: trio.abc.Stream, max_frame: int, timeout: float) -> None:
        self.stream = stream
        self._max = max_frame
        self._timeout = timeout
        self._buffer = bytearray()

    async def send(self, payload: bytes) -> None:
        """Send one frame.

        Raises:
            FrameError: the payload exceeds ``max_frame`` or the send timed out.
        """
        if len(payload) > self._max:
            raise FrameError(f"frame of {len(payload)} bytes exceeds the {self._max}-byte limit")
        with trio.move_on_after(self._timeout) as scope:
            await self.stream.send_all(len(payload).to_bytes(_HEADER, "big") + payload)
        if scope.cancelled_caught:
            raise FrameError("send timed out")

    async def receive(self, *, idle_timeout: float | None = None) -> bytes | None:
        """Receive one frame; ``None`` if the peer closed cleanly between frames.

        Args:
            idle_timeout: seconds to wait for a frame to start (default: the
                frame timeout). Once its first byte is here, the whole frame,
                header included, must arrive within the frame timeout.

        Raises:
            FrameError: too large, stalled, or closed mid-frame.
        """
        wait = self._timeout if idle_timeout is None else idle_timeout
        if not self._buffer:
            with trio.move_on_after(wait) as scope:
                started = await self._fill(1, allow_eof=True)
            if scope.cancelled_caught:
                raise FrameError("peer stalled: no frame started in time")
            if not started:
                return None
        with trio.move_on_after(self._timeout) as scope:
            await self._fill(_HEADER, allow_eof=False)
            length = int.from_bytes(self._buffer[:_HEADER], "big")
            if length > self._max:
                foreign = _FOREIGN.get(bytes(self._buffer[:_HEADER]))
                if foreign is not None:
                    raise ForeignProtocolError(
                        f"the peer speaks {foreign}, not the gossip protocol: not a gossip port"
                    )
                raise FrameError(f"peer announced a {length}-byte frame; the limit is {self._max}")
            await self._fill(_HEADER + length, allow_eof=False)
        if scope.cancelled_caught:
            raise FrameError("peer stalled: frame timed out")
        body = bytes(self._buffer[_HEADER : _HEADER + length])
        del self._buffer[: _HEADER + length]
        return body

    async def _fill(self, n: int, *, allow_eof: bool) -> bool:
        """Buffer at least ``n`` bytes; False on a clean EOF with nothing buffered (if allowed)."""
        while len(self._buffer) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self._buffer)))
            if not chunk:
                if allow_eof and not self._buffer:
                    return False
                raise FrameError("peer closed the stream mid-frame")
            self._buffer += chunk
        return True

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self.stream.aclose()
